//! Keeping credentials out of messages. Errors from the HTTP stack can quote request URLs
//! (an Azure SAS token travels in the query string) and configuration errors can quote the
//! value they failed to parse; every message that leaves the store goes through
//! [`Redactor::clean`] first.

/// Environment variables whose values are secrets, wherever they appear.
const SECRET_ENV: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_BEARER_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
];

/// Option keys whose values are settings, not secrets, and stay readable in errors (an
/// endpoint or region in a message is what a user needs to fix it).
const PUBLIC_OPTIONS: &[&str] = &[
    "region",
    "endpoint",
    "base_url",
    "allow_http",
    "virtual_hosted_style_request",
    "conditional_put",
    "use_emulator",
    "skip_signature",
    "timeout",
    "unsigned_payload",
    "checksum_algorithm",
    "s3_express",
    "disable_tagging",
];

/// Values shorter than this are not scrubbed on their own (they would blank out ordinary
/// words such as "true"); URL queries and user info are removed regardless.
const MIN_SECRET_LEN: usize = 6;

pub const REDACTED: &str = "<redacted>";

/// The secrets one store was opened with: the value of every explicit option that is not
/// a known public setting, and the secret environment variables.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new<'a>(options: impl IntoIterator<Item = (&'a str, &'a str)>) -> Redactor {
        let mut secrets: Vec<String> = options
            .into_iter()
            .filter(|(k, _)| !PUBLIC_OPTIONS.iter().any(|p| k.contains(p)))
            .map(|(_, v)| v.to_string())
            .chain(SECRET_ENV.iter().filter_map(|k| std::env::var(k).ok()))
            .filter(|v| v.trim().len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every known secret, URL query string, URL user info and PEM private
    /// key removed.
    pub fn clean(&self, text: &str) -> String {
        let mut out = redact_pem(&redact_urls(text));
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Removes the query string and the `user:password@` part of every URL in `text`.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')'))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        out.push_str(&redact_one(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Removes PEM private keys (a service-account key quoted in a parse error).
fn redact_pem(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN";
    const END: &str = "PRIVATE KEY-----";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        out.push_str(&rest[..start]);
        // the END marker closes the BEGIN line; the second one closes the key
        let after_begin = &rest[start..];
        let end = after_begin
            .match_indices(END)
            .nth(1)
            .map(|(i, m)| i + m.len())
            .unwrap_or(after_begin.len());
        out.push_str(REDACTED);
        rest = &after_begin[end..];
    }
    out.push_str(rest);
    out
}

/// One URL without its scheme: drops user info and replaces the query.
fn redact_one(url: &str) -> String {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, path) = url.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_string(),
    };
    let path = match path.find('?') {
        Some(q) => format!("{}?{REDACTED}", &path[..q]),
        None => path.to_string(),
    };
    format!("{host}{path}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_query_and_user_info() {
        let text = "error sending request for url (https://acct.blob.core.windows.net/c/k?sv=2020&sig=SECRETSIG): boom";
        let clean = redact_urls(text);
        assert!(!clean.contains("SECRETSIG"), "{clean}");
        assert!(clean.contains("https://acct.blob.core.windows.net/c/k?<redacted>"));
        assert!(clean.ends_with("): boom"), "{clean}");
        let clean = redact_urls("s3://AKIA:hunter22@bucket/prefix and more");
        assert_eq!(clean, "s3://<redacted>@bucket/prefix and more");
    }

    #[test]
    fn private_keys_are_removed() {
        let text = "bad key \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADAN\\n-----END PRIVATE KEY-----\\n\" here";
        let clean = Redactor::default().clean(text);
        assert_eq!(clean, "bad key \"<redacted>\\n\" here");
        let cut = Redactor::default().clean("x -----BEGIN RSA PRIVATE KEY-----\nMIIE");
        assert_eq!(cut, "x <redacted>");
    }

    #[test]
    fn known_values_are_scrubbed_and_short_ones_kept() {
        let r = Redactor::new([
            ("secret_access_key", "wJalrXUtnFEMI/K7MDENG"),
            ("session_token", "true"),
            ("region", "eu-west-1"),
        ]);
        let clean = r.clean("failed to parse \"wJalrXUtnFEMI/K7MDENG\" as bool: true in eu-west-1");
        assert_eq!(
            clean,
            "failed to parse \"<redacted>\" as bool: true in eu-west-1"
        );
        assert!(!format!("{r:?}").contains("wJalr"));
    }
}

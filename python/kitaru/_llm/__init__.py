"""`kitaru.llm()` and what it needs: the call (`call`: the entry points and the durable
`llm_call` checkpoint), requests and answers (`request`, `response`), providers over HTTP
(`providers`), model aliases and prices (`models`) and the credentials of aliases
(`secrets`).

The package is private (`kitaru.llm` is the function): users import `kitaru.llm`,
`kitaru.allm`, `kitaru.LLMResponse` ... from `kitaru`. Nothing is imported here, so the
core can import one module of the package without loading the others.
"""

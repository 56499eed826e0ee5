"""Router policies: pure functions of (request, scorers, costs) -> decision.

`compression/` shortens prompts, `decoding/` plans tier / max_tokens / cascade
under tenant budgets, `uncertainty` scores an answer from its token logprobs.
No module here does I/O: the router's pipeline (router/pipeline.py) gathers what
they need (embeddings, prompt logprobs, budgets) and acts on their decisions.
"""

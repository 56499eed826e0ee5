"""The Python examples in the README and docs/ that use the trained tiers run as
written against the session's deployment (kv-tiers.yaml); those that name a
pretrained model run in test_pretrained.py. Every ```python block is one test,
named after its file and its position there.
"""

import pytest

from live import doc_examples, run_doc_example

pytestmark = pytest.mark.integration
BLOCKS = doc_examples(pretrained=False)


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_readme_python_example_runs(deployment, code):
    run_doc_example(deployment, code)

"""Provenance: the commit of the checkout the code runs from, found from any file's depth."""

from forgetting.runs import provenance
from helpers import REPO, head_commit


def test_the_checkouts_commit_is_recorded():
    assert provenance.repository_root() == REPO
    state = provenance.git_state()
    assert state["git_commit"] == head_commit() and isinstance(state["git_dirty"], bool)

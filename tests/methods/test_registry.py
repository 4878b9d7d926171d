"""The registry (taskvec.methods): what the command line offers is what is registered."""

from __future__ import annotations

from taskvec import methods


def test_the_command_line_offers_exactly_the_library_methods():
    from taskvec.cli import build_parser

    vector = next(
        a for a in build_parser()._subparsers._group_actions[0].choices["vector"]._actions if a.dest == "method"
    )
    assert tuple(vector.choices) == methods.names()

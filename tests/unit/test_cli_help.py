"""Every command group's `--help` lists the commands it listed before the CLI was split
into one module per group, in the same order (the list is the contract, not the layout)."""

import pytest

from shardline.cli.main import main

TOP = "validate schema models keygen sign verify quantize eval up submit render down status generate trace demo"
COMMANDS = {
    (): TOP.split(),
    ("models",): ["build-tiny", "train-tiny", "build-pretrained"],
    ("render",): ["serve-config"],
}


def listed_commands(help_text: str) -> list[str]:
    """The names argparse lists under the COMMAND/ACTION/FORMAT heading (4-space indent)."""
    entries = [line for line in help_text.splitlines() if line.startswith("    ") and line[4] != " "]
    return [line.split()[0] for line in entries]


@pytest.mark.parametrize("group, commands", COMMANDS.items(), ids=["shardline", "models", "render"])
def test_group_help_lists_the_same_commands_in_the_same_order(group, commands, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per command, whatever the terminal
    with pytest.raises(SystemExit) as exit_:
        main([*group, "--help"])
    assert exit_.value.code == 0
    assert listed_commands(capsys.readouterr().out) == commands


LEAF_COMMANDS = [c for c in COMMANDS[()] if c not in ("models", "render")]
LEAF_COMMANDS += ["models build-tiny", "models train-tiny", "models build-pretrained", "render serve-config"]


@pytest.mark.parametrize("command", LEAF_COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: shardline {command} ")

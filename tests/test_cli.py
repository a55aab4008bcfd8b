"""The command line reads as one tool: one spelling per concept in every subcommand, the old spellings
still parsed (hidden), the exit codes of the README's table, run in-process like click's tests."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from squeezenet_mar.cli import EPILOG, build_parser, main

# concept -> the only spelling any subcommand shows in its --help
VOCABULARY = {
    "trusted public key": "--trusted-key",
    "trusted certificate chain": "--trusted-certificate-chain",
    "signing key": "--signing-key",
    "signing certificate chain": "--signing-certificate-chain",
    "served model name": "--model",
    "server address": "--server",
    "model download address": "--model-url",
}
# spellings of release 1.1.0, hidden now: they must still parse, and no --help may show them
OLD_SPELLINGS = {
    "--public-key": "trusted_key",
    "--public-certificate-chain": "trusted_chain",
    "--sign-key": "signing_key",
    "--certificate-chain": "signing_certificate_chain",
    "--url": None,  # server address (predict, evaluate) or model URL (build)
    "--model-name": None,  # serve's old name for --model (build's --model-name is the manifest name)
    "--archive": "archive_option",
}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def shown_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option spellings the subcommand's --help shows."""
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", parser.format_help()))


def test_each_concept_has_one_spelling_in_every_subcommand():
    shown = {name: shown_options(parser) for name, parser in subparsers().items()}
    for name, options in shown.items():
        hidden_but_shown = sorted(
            set(OLD_SPELLINGS) & options - ({"--model-name"} if name == "build" else set())
        )
        assert not hidden_but_shown, f"{name} --help shows old spellings {hidden_but_shown}"
    users = {
        concept: sorted(n for n, o in shown.items() if flag in o) for concept, flag in VOCABULARY.items()
    }
    assert users["trusted public key"] == ["evaluate", "kserve", "publish", "sagemaker", "serve", "verify"]
    assert users["trusted certificate chain"] == users["trusted public key"]
    assert users["signing key"] == ["build", "sign"]
    assert users["served model name"] == ["evaluate", "kserve", "predict", "serve"]
    assert users["server address"] == ["evaluate", "predict"]
    assert users["model download address"] == ["build"]


def test_every_option_is_shown_with_its_first_spelling():
    # an option whose only spelling is hidden elsewhere (build's --model-name, serve's old one) must not
    # fall back to argparse's positional form ("model_name") in --help
    for name, parser in subparsers().items():
        help_text = parser.format_help()
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert re.search(rf"^  {re.escape(action.option_strings[0])}\b", help_text, re.M), (
                    f"{name} --help does not show {action.option_strings[0]}"
                )


def test_the_archive_is_the_first_positional_argument_everywhere():
    for name in ("verify", "sign", "publish", "sagemaker", "kserve", "serve", "evaluate"):
        parser = subparsers()[name]
        positionals = [a for a in parser._actions if not a.option_strings]
        assert positionals and positionals[0].metavar == "ARCHIVE", name


@pytest.mark.parametrize(
    ("argv", "dest", "expected"),
    [
        (["verify", "a.mar", "--public-key", "k.pem"], "trusted_key", Path("k.pem")),
        (["verify", "a.mar", "--public-certificate-chain", "ca.pem"], "trusted_chain", [Path("ca.pem")]),
        (["serve", "--trusted-certificate-chain", "ca.pem"], "trusted_chain", [Path("ca.pem")]),
        (["sign", "a.mar", "--sign-key", "k.pem"], "signing_key", Path("k.pem")),
        (["sign", "a.mar", "--signing-key", "k.pem", "--certificate-chain", "ca.pem"],
         "signing_certificate_chain", [Path("ca.pem")]),
        (["predict", "x.jpg", "--url", "http://h:1"], "server", "http://h:1"),
        (["evaluate", "--images", "d", "--url", "http://h:1"], "server", "http://h:1"),
        (["build", "--url", "http://zoo/m.onnx"], "model_url", "http://zoo/m.onnx"),
        (["serve", "--model-name", "sq"], "model", "sq"),
        (["serve", "--archive", "a.mar"], "archive_option", Path("a.mar")),
        (["evaluate", "--images", "d", "--archive", "a.mar"], "archive_option", Path("a.mar")),
    ],
)  # fmt: skip
def test_old_spellings_still_parse(argv, dest, expected):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == expected


def test_an_old_spelling_does_not_override_the_default_of_the_new_one():
    args = build_parser().parse_args(["verify", "a.mar"])
    assert args.trusted_key is None and args.trusted_chain == []


def test_version_and_verbose_after_the_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert re.fullmatch(r"squeezenet-mar \d+\.\d+\.\d+\n", capsys.readouterr().out)
    assert build_parser().parse_args(["verify", "a.mar", "-v"]).verbose is True
    assert build_parser().parse_args(["-v", "verify", "a.mar"]).verbose is True
    assert build_parser().parse_args(["verify", "a.mar"]).verbose is False


def test_sign_says_in_its_usage_that_the_key_is_required(capsys):
    with pytest.raises(SystemExit) as done:
        main(["sign", "a.mar"])
    assert done.value.code == 2
    assert "the following arguments are required: --signing-key" in capsys.readouterr().err
    assert "[--signing-key" not in subparsers()["sign"].format_usage()


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "--model-file", "nope.onnx", "--no-smoke-test"],
        ["build", "--model-file", "{model}", "--synset", "nope.txt"],
        ["verify", "nope.mar"],
        ["sign", "nope.mar", "--signing-key", "{key}"],
        ["publish", "nope.mar", "--zoo", "{tmp}/zoo"],
        ["publish", "{archive}", "--zoo", "{tmp}/zoo", "--evaluation", "nope.json"],
        ["sagemaker", "nope.mar"],
        ["serve", "nope.mar"],
        ["serve", "{archive}", "--config", "nope.properties"],
        ["evaluate", "--images", "nope"],
        ["evaluate", "nope.mar", "--images", "{tmp}"],
        ["predict", "nope.jpg"],
        ["verify", "{archive}", "--trusted-key", "nope.pem"],
    ],
)
def test_a_missing_input_file_is_exit_code_2_everywhere(argv, tmp_path, capsys):
    archive = tmp_path / "a.mar"
    archive.write_bytes(b"not read: an earlier input is missing")
    (tmp_path / "key.pem").write_text("unused")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"unused")
    values = {
        "tmp": str(tmp_path),
        "archive": str(archive),
        "key": str(tmp_path / "key.pem"),
        "model": str(model),
    }
    code = main([part.format(**values) for part in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(r"error: .*nope(\.\w+)?: no such", err), err


def exit_codes(text: str) -> dict[str, str]:
    """``0 ok, 1 other error, ...`` as {code: meaning}; commas inside parentheses belong to the meaning."""
    flat = " ".join(text.split())
    return dict(re.findall(r"(?:^|, )(\d) ((?:[^,(]|\([^)]*\))+)", flat))


def test_the_exit_code_table_is_the_one_the_readme_shows():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = re.search(r"Exit codes of `squeezenet-mar`[^:]*: (.*?)\.\n\n", readme, re.S).group(1)
    epilog = EPILOG.removeprefix("exit codes: ")
    assert exit_codes(table) == exit_codes(epilog)
    assert sorted(exit_codes(epilog)) == [str(code) for code in range(10)]


@pytest.mark.parametrize("blank", ["", " ", "\n"])
def test_serve_refuses_a_blank_trusted_key_in_its_environment_before_mms(
    blank, built, tmp_path, monkeypatch, capsys
):
    """A variable that is set must name a key that loads: serve never starts MMS without the check."""
    monkeypatch.setenv("SQUEEZENET_TRUSTED_KEY", blank)
    code = main(["serve", str(built.archive), "--home", str(tmp_path / "home")])
    assert code == 2
    assert "SQUEEZENET_TRUSTED_KEY: set but blank" in capsys.readouterr().err
    assert not (tmp_path / "home" / "mms").exists()  # MMS was never started


def test_serve_refuses_options_and_environment_that_trust_different_keys(
    built, tmp_path, monkeypatch, capsys
):
    from keys import make_key

    one, other = make_key(tmp_path, "one"), make_key(tmp_path, "other")
    monkeypatch.setenv("SQUEEZENET_TRUSTED_KEY", str(one.public))
    code = main(
        ["serve", str(built.archive), "--home", str(tmp_path / "home"), "--trusted-key", str(other.public)]
    )
    assert code == 2 and "name different things to trust" in capsys.readouterr().err

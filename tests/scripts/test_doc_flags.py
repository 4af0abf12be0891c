"""Every flag the README and docs/*.md name for a command exists in that command's --help.

The flags are read from the docs themselves: every code span and fenced code block that runs a
command (`scripts/cloakbench run --quick`, `report FILE -o DIR` at the start of a span,
`"$BUILD/harness/realm/cloak-realm" --listen ...`), the option tables under a command's synopsis
(docs/verify.md), and `scripts/cloakbench help`'s own summary of each command. Each command's
--help is run as a user would run it (`scripts/cloakbench run --help`, `cloak-verify --help`, ...);
the programs come from the build that CLOAK_DOC_FLAGS_BUILD names (ctest sets it). Without it
only the dispatcher's Python commands are checked, and test_the_docs_are_read is skipped saying so.

A doc that names a flag its command does not have fails the test with the file and line; the
ReadingTheDocs cases show that on a synthetic page."""

import os
import re
import subprocess
import unittest

import helpers

DISPATCHER = os.path.join(helpers.ROOT, "scripts", "cloakbench")
SUBCOMMANDS = ("run", "verify", "plot", "compare", "report", "history", "gate", "test")
# The programs a doc may run directly, and where the build puts them.
PROGRAMS = {
    "cloak-verify": "harness/verify/cloak-verify",
    "cloak-downstream": "harness/downstream/cloak-downstream",
    "cloak-realm": "harness/realm/cloak-realm",
    "cloak-topology": "harness/topology/cloak-topology",
    "cloak-matrix": "bench/cloak-matrix",
}

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
# An inline code span: one or more backticks, then anything up to the same run (it may cross a
# line break, as docs/results.md's `run` synopsis does, but not a blank line).
_SPAN = re.compile(r"(`+)((?:(?!\n\s*\n).)+?)\1", re.S)
_DISPATCH = re.compile(r"cloakbench\"?\s+(%s)(?=[\s\"]|$)" % "|".join(SUBCOMMANDS))
_PROGRAM = re.compile(r"(?<![\w.-])(%s)\"?(?=\s|$)" % "|".join(re.escape(p) for p in PROGRAMS))
_BARE = re.compile(r"^(%s)(?=\s|$)" % "|".join(SUBCOMMANDS))
_FLAG = re.compile(r"^(--?[A-Za-z][\w-]*)")
_HELP_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_ENDS = {"|", "||", "&&", ";", "&", "--"}


def command_key(word):
    """`run` -> 'cloakbench run'; a program's name stays as it is."""
    return "cloakbench " + word if word in SUBCOMMANDS else word


def flags_after(text):
    """The flags of the command whose arguments start `text`, up to where the command ends: a
    shell operator or redirection, or `--` (what follows belongs to another program, or is a file
    list). `[--a | --b]` and `kernel\\|model` are alternatives, not pipes."""
    flags, depth = [], 0
    for token in text.split():
        depth += token.count("[") - token.count("]")
        bare = token.strip("[]()\"'`,")
        if depth <= 0 and (bare in _ENDS or token.startswith((">", "2>", "<"))):
            break
        if bare == "--":
            break
        if token.endswith(";"):
            break
        m = _FLAG.match(bare)
        if m:
            flags.append(m.group(1))
    return flags


def _join_continuations(block):
    """A fenced block's lines with shell continuations (a trailing backslash) and a synopsis's
    indented continuation lines (`    [--more]`) joined to the line they continue."""
    lines = []
    for line in block.split("\n"):
        if lines and (lines[-1].endswith("\\") or re.match(r"^\s+[\[-]", line)):
            lines[-1] = lines[-1].rstrip("\\") + " " + line.strip()
        else:
            lines.append(line)
    return lines


def commands_in(text, bare=True):
    """[(command, flags)] for every command run in `text` (one code span or block line). With
    `bare`, a span that starts with a subcommand (`run --quick`) runs it too; not a block's line,
    where `test` is the shell's."""
    found = []
    for m in _DISPATCH.finditer(text):
        found.append((command_key(m.group(1)), flags_after(text[m.end():])))
    for m in _PROGRAM.finditer(text):
        found.append((m.group(1), flags_after(text[m.end():])))
    if not found and bare:
        m = _BARE.match(text.strip())
        if m:
            found.append((command_key(m.group(1)), flags_after(text.strip()[m.end():])))
    return found


def _option_table_flags(lines):
    """The flags in the first column of an option table (header `| option | ...`)."""
    flags = []
    for line in lines[2:]:
        first = re.split(r"(?<!\\)\|", line.strip().strip("|"))[0]
        span = re.match(r"\s*`(-[^`]*)`", first)
        if span:
            flags.extend(flags_after(span.group(1)))
    return flags


def flags_in_markdown(text):
    """[(command, flag, line number)] for every flag a Markdown document names for a command: in
    fenced code blocks, in code spans, and in option tables (a table whose first header is
    `option`; its command is the last one named above it)."""
    found, named = [], []  # named: (offset, command) of every command, for the option tables
    blocks = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start(1)) + 1
        for joined in _join_continuations(m.group(1)):
            for command, flags in commands_in(joined, bare=False):
                found.extend((command, f, line) for f in flags)
                named.append((m.start(), command))
    outside = text  # the text with its code blocks blanked out, offsets kept
    for start, end in blocks:
        outside = outside[:start] + " " * (end - start) + outside[end:]
    for m in _SPAN.finditer(outside):
        line = text.count("\n", 0, m.start()) + 1
        for command, flags in commands_in(m.group(2)):
            found.extend((command, f, line) for f in flags)
            named.append((m.start(), command))
    lines = outside.split("\n")
    offset, i = 0, 0
    while i < len(lines):
        if not lines[i].lstrip().startswith("|"):
            offset += len(lines[i]) + 1
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            j += 1
        header = lines[i].strip().strip("|").split("|")[0].strip().lower()
        above = [command for at, command in sorted(named) if at < offset]
        if header == "option" and above:
            found.extend((above[-1], f, i + 1) for f in _option_table_flags(lines[i:j]))
        offset += sum(len(line) + 1 for line in lines[i:j])
        i = j
    return found


def flags_in_usage(text):
    """[(command, flag, line)] from `scripts/cloakbench help`: each command's block (its line at
    an indent of two and the lines under it) names flags of that command only."""
    found, command = [], None
    for number, line in enumerate(text.split("\n"), start=1):
        m = re.match(r"^  (%s)\b" % "|".join(SUBCOMMANDS), line)
        if m:
            command = command_key(m.group(1))
        elif not line.startswith("   "):
            command = None
        if command:
            found.extend((command, f, number) for f in
                         (t.group(1) for t in _HELP_FLAG.finditer(line)) if f != "--")
    return found


def help_flags(help_text):
    """Every flag a --help text names."""
    return {m.group(1) for m in _HELP_FLAG.finditer(help_text)}


def option_flags(help_text):
    """The options a --help lists (the flags that open its option lines), -h and --help aside."""
    flags = set()
    for line in help_text.split("\n"):
        m = re.match(r"^  (-[^\s].*?)(?:\s{2,}|$)", line)  # wrapped text sits deeper
        if m:
            flags.update(f for f in _HELP_FLAG.findall(m.group(1)) if f not in ("-h", "--help"))
    return flags


def unknown_flags(named, helps):
    """[(where, command, flag)] of the flags `named` [(where, command, flag)] that the command's
    help (`helps`: command -> set of flags, or None when it could not be run) does not have."""
    return sorted({(where, command, flag) for where, command, flag in named
                   if helps.get(command) is not None and flag not in helps[command]
                   and flag not in ("-h", "--help")})


def doc_files():
    docs = os.path.join(helpers.ROOT, "docs")
    return [os.path.join(helpers.ROOT, "README.md")] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))


def _run_help(argv, env=None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                       env=env)
    if p.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(argv), p.returncode, p.stderr))
    return p.stdout + p.stderr


def collect_helps(commands, build):
    """command -> the flags of its --help; None for a program when there is no build to run."""
    helps = {}
    env = dict(os.environ)
    if build:
        env["CLOAK_BUILD_DIR"] = build
    for command in sorted(commands):
        if command.startswith("cloakbench "):
            sub = command.split()[1]
            if sub == "verify" and not build:
                helps[command] = None  # without a build it prints the dispatcher's summary
                continue
            helps[command] = help_flags(_run_help([DISPATCHER, sub, "--help"], env))
        elif build:
            helps[command] = help_flags(_run_help([os.path.join(build, PROGRAMS[command]), "--help"]))
        else:
            helps[command] = None
    return helps


class DocFlagsExist(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.build = os.environ.get("CLOAK_DOC_FLAGS_BUILD")
        cls.named = []
        for path in doc_files():
            with open(path, encoding="utf-8") as f:
                name = os.path.relpath(path, helpers.ROOT)
                cls.named.extend(("%s:%d" % (name, line), command, flag)
                                 for command, flag, line in flags_in_markdown(f.read()))
        usage = _run_help([DISPATCHER, "help"])
        cls.named.extend(("scripts/cloakbench help:%d" % line, command, flag)
                         for command, flag, line in flags_in_usage(usage))
        cls.helps = collect_helps({command for _, command, _ in cls.named}, cls.build)

    def test_every_flag_the_docs_name_is_in_the_commands_help(self):
        missing = unknown_flags(self.named, self.helps)
        self.assertEqual(missing, [], "flags the docs name that the command's --help lacks:\n" +
                         "\n".join("  %s: %s %s" % m for m in missing))

    def test_the_docs_are_read(self):
        # The reading finds what a reader sees, so an empty result cannot pass for agreement.
        commands = {command for _, command, _ in self.named}
        for command in ("cloakbench run", "cloakbench verify", "cloakbench compare",
                        "cloakbench gate", "cloakbench report", "cloakbench history",
                        "cloakbench plot", "cloak-verify", "cloak-downstream", "cloak-realm",
                        "cloak-matrix"):
            self.assertIn(command, commands)
        run = {flag for _, command, flag in self.named if command == "cloakbench run"}
        self.assertTrue({"--quick", "--hosts", "--downstream", "--realm-dir", "--list"} <= run, run)
        verify = {flag for where, command, flag in self.named
                  if command == "cloakbench verify" and where.startswith("docs/verify.md")}
        self.assertTrue({"--auth", "--hosts", "--clients", "--filter"} <= verify, verify)
        if not self.build:
            self.skipTest("CLOAK_DOC_FLAGS_BUILD is not set: the programs' --help were not run")
        for command in ("cloak-verify", "cloak-downstream", "cloak-realm", "cloak-matrix"):
            self.assertIsNotNone(self.helps.get(command), command)


class SynopsesAreWhole(unittest.TestCase):
    """The reference pages' synopses name every option the command has (the other direction)."""

    def assert_synopsis_whole(self, doc, command, argv):
        with open(os.path.join(helpers.ROOT, doc), encoding="utf-8") as f:
            named = {flag for c, flag, _ in flags_in_markdown(f.read()) if c == command}
        options = option_flags(_run_help(argv))
        self.assertTrue(options, argv)
        self.assertEqual(sorted(options - named), [], "options of %s that %s does not name" % (
            " ".join(argv), doc))

    def test_results_md_names_every_option_of_run(self):
        self.assert_synopsis_whole("docs/results.md", "cloakbench run", [DISPATCHER, "run", "--help"])

    def test_verify_md_names_every_option_of_verify(self):
        build = os.environ.get("CLOAK_DOC_FLAGS_BUILD")
        if not build:
            self.skipTest("CLOAK_DOC_FLAGS_BUILD is not set: cloak-verify's --help was not run")
        self.assert_synopsis_whole("docs/verify.md", "cloakbench verify",
                                   [os.path.join(build, PROGRAMS["cloak-verify"]), "--help"])


class ReadingTheDocs(unittest.TestCase):
    """The reader on synthetic snippets: a flag that does not exist is caught."""

    SNIPPET = """# A page

Run `scripts/cloakbench run --quick --no-such-flag` first, then
`report FILE --every 8 -o DIR` and

```sh
"$BUILD/harness/realm/cloak-realm" --listen "$A_ADDR" \\
  --hosts down1 > realm.out 2> --not-a-flag &
scripts/cloakbench gate --files a.json -- --benchmark_x b.json
```

`scripts/cloakbench run [--hosts | --downstream tcp:H:P --realm-dir DIR] [-- --benchmark_y]`

```
scripts/cloakbench verify [--json]
```

| option | meaning |
|---|---|
| `--auth local\\|kerberos` | the package |
| `--made-up S` | nothing |
"""

    def test_commands_and_their_flags_are_read_from_spans_blocks_and_option_tables(self):
        named = sorted(set((c, f) for c, f, _ in flags_in_markdown(self.SNIPPET)))
        self.assertEqual(named, sorted({
            ("cloakbench run", "--quick"), ("cloakbench run", "--no-such-flag"),
            ("cloakbench report", "--every"), ("cloakbench report", "-o"),
            ("cloak-realm", "--listen"), ("cloak-realm", "--hosts"),
            ("cloakbench gate", "--files"),
            ("cloakbench run", "--hosts"), ("cloakbench run", "--downstream"),
            ("cloakbench run", "--realm-dir"),
            ("cloakbench verify", "--json"), ("cloakbench verify", "--auth"),
            ("cloakbench verify", "--made-up")}))

    def test_a_flag_that_does_not_exist_fails_the_check(self):
        named = [("snippet:%d" % line, c, f) for c, f, line in flags_in_markdown(self.SNIPPET)
                 if c == "cloakbench run"]
        helps = collect_helps({"cloakbench run"}, None)
        self.assertEqual(unknown_flags(named, helps),
                         [("snippet:3", "cloakbench run", "--no-such-flag")])

    def test_the_dispatchers_summary_is_read_per_command(self):
        usage = ("commands:\n"
                 "  run [--quick] [--list]\n"
                 "                       (--list: print the cells; -- flags)\n"
                 "  verify [--json] [--hosts]\n"
                 "\n"
                 "exit status of gate and compare: --fail-on-inconclusive turns 3 into 1.\n")
        self.assertEqual(sorted(set((c, f) for c, f, _ in flags_in_usage(usage))), [
            ("cloakbench run", "--list"), ("cloakbench run", "--quick"),
            ("cloakbench verify", "--hosts"), ("cloakbench verify", "--json")])


if __name__ == "__main__":
    unittest.main()

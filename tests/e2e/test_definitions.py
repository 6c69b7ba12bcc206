"""Runner and tasklist-handler definitions from INI files: search order, errors, listing.

Every test runs with its own HOME and current directory (never the real ones).
"""

from __future__ import annotations

import io
import shutil
import textwrap
from pathlib import Path

import pytest
from helpers.farmer import run_farmer, write_tasklist

from taskfarmer.cli.listing import print_listing
from taskfarmer.compat.runner import LegacyRunner
from taskfarmer.errors import ConfigError
from taskfarmer.registry import Registry
from taskfarmer.registry.catalog import RUNNERS, Catalog, shipped_directory
from taskfarmer.runners import BasicRunner, ShifterRunner
from taskfarmer.tasks import ListTaskList, TemplateTaskList

SHIPPED = shipped_directory("runners.d")


def write_ini(directory: Path, name: str, text: str) -> Path:
    """Write ``directory/name`` (making the directory) with dedented ``text``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME and current directory for the test."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


def registry(home: Path) -> Registry:
    return Registry({"HOME": str(home)}, Path.cwd())


# -- search order ----------------------------------------------------------------------------


def test_default_is_basic_and_list_unless_defined(home: Path) -> None:
    found = registry(home)
    assert type(found.runner("default")) is BasicRunner
    assert type(found.tasklist("default")) is ListTaskList
    assert found.warnings() == []


def test_default_section_replaces_the_default_runner(home: Path) -> None:
    """PyTaskFarmer's users run every task in a container with a ``[default]`` section; the
    search order decides between several, as for any other name."""
    py = write_ini(home / ".pytaskfarmer" / "runners.d", "d.ini", """
        [default]
        Runner = taskfarmer.runners.ShifterRunner
        image = py
        """)
    found = registry(home)
    runner = found.runner("default")
    assert isinstance(runner, ShifterRunner) and runner.image == "py"
    assert found.warnings() == []
    [entry] = [e for e in found.runners.listing() if e.origin == "built-in"]
    assert entry.note == f"replaced by {py}"
    write_ini(Path.cwd() / "runners.d", "d.ini", """
        [default]
        Runner = taskfarmer.runners.ShifterRunner
        image = cwd
        """)
    assert registry(home).runner("default").image == "cwd"  # type: ignore[attr-defined]


def test_broken_default_section_is_an_error(home: Path) -> None:
    write_ini(home / ".pytaskfarmer" / "runners.d", "d.ini", """
        [default]
        image = x
        """)
    with pytest.raises(ConfigError, match=r"d\.ini \[default\]: no Runner key"):
        registry(home).runner("default")


def test_later_directories_win(home: Path) -> None:
    for place, image in ((home / ".pytaskfarmer", "py"), (home / ".taskfarmer", "tf"),
                         (Path.cwd(), "cwd")):
        write_ini(place / "runners.d", "a.ini", f"""
            [shared]
            Runner = taskfarmer.runners.ShifterRunner
            image = {image}
            [only-{image}]
            Runner = taskfarmer.runners.ShifterRunner
            image = {image}
            """)
    found = registry(home)
    assert found.runner("shared").image == "cwd"
    assert {found.runner(f"only-{i}").image for i in ("py", "tf", "cwd")} == {"py", "tf", "cwd"}
    definition = found.runners.get("shared")
    assert definition.path == Path.cwd() / "runners.d" / "a.ini"
    notes = [e.note for e in found.runners.listing() if e.name == "shared"]
    assert notes == [f"replaced by {definition.path}"] * 2 + [""]


def test_user_definitions_override_shipped_ones(home: Path) -> None:
    assert SHIPPED is not None and (SHIPPED / "docker.ini").is_file()
    assert registry(home).runners.get("docker-example").path == SHIPPED / "docker.ini"
    write_ini(home / ".pytaskfarmer" / "runners.d", "mine.ini", """
        [docker-example]
        Runner = taskfarmer.runners.DockerRunner
        image = mine
        """)
    assert registry(home).runner("docker-example").image == "mine"


def test_files_of_a_directory_are_read_in_name_order(home: Path) -> None:
    for name, image in (("b.ini", "b"), ("a.ini", "a"), ("c.ini", "c")):
        write_ini(Path.cwd() / "runners.d", name, f"""
            [x]
            Runner = taskfarmer.runners.ShifterRunner
            image = {image}
            """)
    assert registry(home).runner("x").image == "c"


def test_tasklist_handlers_have_their_own_directories(home: Path) -> None:
    write_ini(home / ".taskfarmer" / "tasklists.d", "t.ini", """
        [files]
        TaskList = taskfarmer.tasks.TemplateTaskList
        command = cat {line}
        """)
    found = registry(home)
    assert isinstance(found.tasklist("files"), TemplateTaskList)
    with pytest.raises(ConfigError, match="unknown runner 'files'"):
        found.runner("files")


def test_every_shipped_definition_builds(home: Path) -> None:
    found = registry(home)
    names = {e.name for e in found.runners.listing()} | {e.name for e in found.tasklists.listing()}
    assert {"shifter-example", "docker-example", "podman-example", "apptainer-example",
            "template-example"} <= names
    for entry in found.runners.listing():
        assert entry.note == "", entry
        found.runner(entry.name)
    for entry in found.tasklists.listing():
        assert entry.note == "", entry
        found.tasklist(entry.name)
    assert found.warnings() == []


# -- PyTaskFarmer's files --------------------------------------------------------------------


PYTASKFARMER_RUNNERS = Path(__file__).parent.parent / "data" / "pytaskfarmer-runners.ini"


def test_pytaskfarmer_runner_files_load_unchanged(home: Path) -> None:
    (home / ".pytaskfarmer" / "runners.d").mkdir(parents=True)
    shutil.copy(PYTASKFARMER_RUNNERS, home / ".pytaskfarmer" / "runners.d" / "atlas.ini")
    found = registry(home)
    mcc = found.runner("mcc")
    assert isinstance(mcc, ShifterRunner)
    assert mcc.argv(0, "echo hi")[:2] == ["shifter", "--image=docker:gitlab-registry.cern.ch/"
                                          "berkeleylab/muoncollider/muoncollider-docker/"
                                          "mucoll-ilc-framework:1.5.1-centos8"]
    reco = found.runner("reco22")
    assert isinstance(reco, ShifterRunner) and reco.tempdir is not None
    argv = reco.argv(3, "Reco_tf.py --in x")
    assert "--module=cvmfs" in argv
    assert argv[-1].startswith("source ${ATLAS_LOCAL_ROOT_BASE}/user/atlasLocalSetup.sh && ")
    assert type(found.runner("plain")) is BasicRunner
    assert found.warnings() == []


def test_pytaskfarmer_tasklist_file_and_interpolation(home: Path) -> None:
    write_ini(home / ".pytaskfarmer" / "tasklists.d", "lines.ini", """
        [lines]
        TaskList = taskfarmer.tasks.ListTaskList
        """)
    write_ini(home / ".pytaskfarmer" / "tasklists.d", "templates.ini", """
        [DEFAULT]
        quote = False
        [pct]
        TaskList = taskfarmer.tasks.TemplateTaskList
        command = date +%%s {line}
        """)
    found = registry(home)
    assert type(found.tasklist("lines")) is ListTaskList
    template = found.tasklist("pct")
    assert isinstance(template, TemplateTaskList) and template.quote is False
    assert template.template == "date +%s {line}"


# -- errors ----------------------------------------------------------------------------------

#: (INI text, the error's reason contains). Each defines the runner "bad".
BROKEN: dict[str, tuple] = {
    "no-section-header": ("Runner = taskfarmer.runners.BasicRunner\n[bad]\n",
                          "comes before any [section]"),
    "garbage-line": ("[bad]\nRunner = taskfarmer.runners.BasicRunner\nthis is not ini\n",
                     "line 3: not 'key = value'"),
    "duplicate-key": ("[bad]\nRunner = taskfarmer.runners.BasicRunner\nRunner = x.Y\n",
                      "key 'Runner' appears twice"),
    "bad-interpolation": ("[bad]\nRunner = taskfarmer.runners.ShifterRunner\nimage = i\n"
                          "setup = date +%s\n", "'%' must be followed by"),
    "no-runner-key": ("[bad]\nimage = x\n", "no Runner key"),
    "module-missing": ("[bad]\nRunner = nosuchmodule.Runner\n",
                       "cannot import nosuchmodule: No module named 'nosuchmodule'"),
    "module-broken": ("[bad]\nRunner = brokenmod.Runner\n", "cannot import brokenmod: "),
    "class-missing": ("[bad]\nRunner = taskfarmer.runners.NoSuchRunner\n",
                      "module taskfarmer.runners has no 'NoSuchRunner'"),
    "not-dotted": ("[bad]\nRunner = BasicRunner\n", "'BasicRunner' is not a module.Class path"),
    "unknown-argument": ("[bad]\nRunner = taskfarmer.runners.ShifterRunner\nimag = x\n",
                         "unknown argument 'imag' (accepted: image, setup, volumes, modules, "
                         "tempdir, options, shell)"),
    "missing-argument": ("[bad]\nRunner = taskfarmer.runners.DockerRunner\n",
                         "missing argument 'image'"),
    "bad-value": ("[bad]\nRunner = taskfarmer.runners.ShifterRunner\nimage = i\n"
                  "tempdir = maybe\n", "tempdir = 'maybe': expected True or False"),
    "bad-options": ("[bad]\nRunner = taskfarmer.runners.DockerRunner\nimage = i\n"
                    "options = --label 'x\n", "options = "),
    "not-a-runner": ("[bad]\nRunner = collections.OrderedDict\n",
                     "collections.OrderedDict is not a runner"),
    "constructor-raises": ("[bad]\nRunner = brokenctor.Runner\n",
                           "brokenctor.Runner: RuntimeError: no licence server"),
}


@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path (and PYTHONPATH) with a few broken user modules."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "brokenmod.py").write_text("def oops(:\n")
    (modules / "brokenctor.py").write_text(
        "class Runner:\n"
        "    def __init__(self):\n"
        "        raise RuntimeError('no licence server')\n"
        "    def run(self, taskid, command, logfh):\n"
        "        return 0\n")
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.setenv("PYTHONPATH", str(modules))
    return modules


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_error_names_file_and_section(case: str, home: Path, user_modules: Path) -> None:
    text, reason = BROKEN[case]
    path = write_ini(home / ".taskfarmer" / "runners.d", "broken.ini", text)
    with pytest.raises(ConfigError) as caught:
        registry(home).runner("bad")
    error = caught.value
    assert (error.path, error.section) == (path, "bad")
    assert reason in error.reason
    assert "\n" not in str(error)
    assert str(error).startswith(f"{path} [bad]: ")


@pytest.mark.parametrize("case", ["garbage-line", "module-missing", "unknown-argument"])
def test_cli_reports_errors_in_one_line(case: str, home: Path, user_modules: Path) -> None:
    text, reason = BROKEN[case]
    path = write_ini(Path.cwd() / "runners.d", "broken.ini", text)
    tasks = write_tasklist(Path.cwd() / "tasks", ["echo hi"])
    result = run_farmer([str(tasks), "--runner", "bad"], cwd=Path.cwd(),
                        env={"HOME": str(home), "PYTHONPATH": str(user_modules)})
    assert result.returncode == 2
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"farmer: error: {path} [bad]: ")
    assert reason in result.stderr
    assert not (Path.cwd() / "tasks_workdir").exists()


def test_unknown_names_list_the_known_ones(home: Path) -> None:
    write_ini(home / ".taskfarmer" / "runners.d", "a.ini", """
        [mine]
        Runner = taskfarmer.runners.BasicRunner
        """)
    with pytest.raises(ConfigError) as caught:
        registry(home).runner("nope")
    assert caught.value.option == "--runner"
    assert str(caught.value) == (
        "--runner: unknown runner 'nope' (known: apptainer-example, default, "
        "docker-example, mine, podman-example, shifter-example)")
    tasks = write_tasklist(Path.cwd() / "tasks", ["echo hi"])
    result = run_farmer([str(tasks), "-t", "nope"], env={"HOME": str(home)}, cwd=Path.cwd())
    assert result.returncode == 2
    assert result.stderr == ("farmer: error: --tasklist: unknown tasklist handler 'nope' "
                             "(known: default, template-example)\n")


def test_a_broken_file_breaks_only_its_own_names(home: Path) -> None:
    good = write_ini(home / ".taskfarmer" / "runners.d", "a.ini", """
        [victim]
        Runner = taskfarmer.runners.BasicRunner
        [fine]
        Runner = taskfarmer.runners.BasicRunner
        """)
    broken = write_ini(Path.cwd() / "runners.d", "b.ini", "[victim]\nnonsense\n")
    found = registry(home)
    assert type(found.runner("fine")) is BasicRunner
    with pytest.raises(ConfigError) as caught:  # the later, broken definition wins
        found.runner("victim")
    assert (caught.value.path, caught.value.section) == (broken, "victim")
    assert [str(w) for w in found.warnings()] == [
        f"{broken}: line 2: not 'key = value' nor a [section]: 'nonsense\\n'"]
    listing = {(e.name, e.origin): e.note for e in found.runners.listing()}
    assert listing[("victim", str(good))] == "replaced by a broken definition"
    assert listing[("", str(broken))].startswith("error: line 2")


def test_cli_warns_about_unused_broken_files_and_runs(home: Path) -> None:
    broken = write_ini(home / ".pytaskfarmer" / "runners.d", "old.ini", """
        [gone]
        Runner = somewhere.that.is.gone
        [nokey]
        image = x
        """)
    write_ini(home / ".taskfarmer" / "tasklists.d", "t.ini", "garbage\n")
    tasks = write_tasklist(Path.cwd() / "tasks", ["echo hi"])
    result = run_farmer([str(tasks)], env={"HOME": str(home)}, cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"farmer: warning: {broken} [nokey]: no Runner key (the class of this runner: "
        "Runner = module.Class)",
        f"farmer: warning: {home}/.taskfarmer/tasklists.d/t.ini: line 1: 'garbage' comes "
        "before any [section]",
    ]


# -- user classes ----------------------------------------------------------------------------


def test_user_runner_classes_and_legacy_ones(home: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myrunners.py").write_text(textwrap.dedent("""
        from taskfarmer.runners import Runner, BasicRunner

        class Echo(Runner):
            def __init__(self, word):
                self.word = word
            def argv(self, task_id, command):
                return ["echo", self.word, command]

        class Old:  # written for PyTaskFarmer
            def __init__(self, prefix=''):
                self.prefix = prefix
            def run(self, taskid, command, logfh):
                return 0
            def terminate(self):
                pass

        class OldSubclass(BasicRunner):
            def run(self, taskid, command, logfh):
                return super().run(taskid, command, logfh)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    write_ini(home / ".taskfarmer" / "runners.d", "mine.ini", """
        [echo]
        Runner = myrunners.Echo
        word = hello
        [old]
        Runner = myrunners.Old
        prefix = >
        [oldsub]
        Runner = myrunners.OldSubclass
        """)
    found = registry(home)
    assert found.runner("echo").argv(1, "x") == ["echo", "hello", "x"]
    old = found.runner("old")
    assert isinstance(old, LegacyRunner)
    assert type(old.legacy).__name__ == "Old" and old.legacy.prefix == ">"
    assert isinstance(found.runner("oldsub"), LegacyRunner)


# -- listing ---------------------------------------------------------------------------------


def test_list_runners_plain_and_rich(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = write_ini(Path.cwd() / "runners.d", "mine.ini", """
        [docker-example]
        Runner = taskfarmer.runners.DockerRunner
        image = mine
        """)
    result = run_farmer(["--list-runners"], env={"HOME": str(home)}, cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CLASS", "DEFINED", "IN", "NOTE"]
    assert lines[1].split() == ["default", "taskfarmer.runners.BasicRunner", "built-in"]
    rows = [line.split(None, 3) for line in lines[2:]]
    assert ["docker-example", "taskfarmer.runners.DockerRunner", str(SHIPPED / "docker.ini"),
            f"replaced by {mine}"] in rows
    assert ["docker-example", "taskfarmer.runners.DockerRunner", str(mine)] in rows
    catalog = registry(home).runners
    monkeypatch.setenv("COLUMNS", "300")  # no folding of long paths
    out = io.StringIO()
    print_listing(catalog, out, terminal=True)
    assert "Runners" in out.getvalue() and "┃ NAME" in out.getvalue()
    assert str(mine) in out.getvalue()


def test_list_tasklists_needs_no_tasklist_argument(home: Path) -> None:
    result = run_farmer(["--list-tasklists"], env={"HOME": str(home)}, cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    assert "template-example" in result.stdout


def test_catalog_skips_missing_directories(tmp_path: Path) -> None:
    catalog = Catalog.load(RUNNERS, [tmp_path / "nothing", tmp_path / "nothing"])
    assert catalog.definitions == {} and catalog.warnings() == []
    assert isinstance(Registry({"HOME": str(tmp_path)}, tmp_path).runner("default"),
                      BasicRunner)

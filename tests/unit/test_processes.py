"""The check that the tests leave no process behind (``tests.processes.processes_naming``): it
names every process that names a folder but the one asking and those it was started under."""

import json
import subprocess
import sys
from pathlib import Path

from tests.processes import processes_naming

REPO = Path(__file__).resolve().parents[2]


def test_a_process_naming_the_folder_is_found_but_not_the_ones_the_asker_runs_under(tmp_path):
    folder = tmp_path / "basetemp"
    folder.mkdir()
    # a sibling working in the folder, and an asker started by a shell whose command line names
    # it (as `timeout 900 pytest --basetemp=FOLDER` names it)
    sibling = subprocess.Popen(["sleep", "60"], cwd=folder)
    try:
        ask = f"import json; from tests.processes import processes_naming; print(json.dumps(processes_naming({str(folder)!r})))"
        shell = subprocess.run(
            ["sh", "-c", f'{sys.executable} -c "$0" || exit 1; : {folder}', ask],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        found = {int(pid): cmd for pid, cmd in json.loads(shell.stdout).items()}
        assert list(found) == [sibling.pid], found
        assert processes_naming(folder) == {sibling.pid: "sleep 60"}
    finally:
        sibling.kill()
        sibling.wait()

"""Trees moved to the trash are gone from their place at once and deleted by empty(); what a
crash left in the trash goes at the next emptying; emptying runs one at a time."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from cri_py.storage.trash import Trash
from cri_py.tasks import TaskOwner


def _tree(path: Path) -> Path:
    (path / "a" / "b").mkdir(parents=True)
    (path / "a" / "f").write_text("x")
    os.mkfifo(path / "ctl")
    return path


def test_a_moved_tree_leaves_its_place_and_empty_deletes_it(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    tree = _tree(tmp_path / "containers" / "abc")
    trash.move(tree)
    assert not tree.exists()
    assert [p.name.split(".")[0] for p in (tmp_path / "trash").iterdir()] == ["abc"]
    trash.empty()
    assert list((tmp_path / "trash").iterdir()) == []
    assert (tmp_path / "containers").is_dir()


def test_the_same_name_twice_keeps_both(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    for _ in range(2):
        trash.move(_tree(tmp_path / "abc"))
    assert len(list((tmp_path / "trash").iterdir())) == 2


def test_absent_trees_and_an_absent_trash_are_fine(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    trash.move(tmp_path / "absent")
    trash.empty()
    assert not (tmp_path / "trash").exists()


def test_leftovers_of_a_crash_go_at_the_next_emptying(tmp_path: Path) -> None:
    _tree(tmp_path / "trash" / "abc.1234")
    (tmp_path / "trash" / "stray-file").write_text("")
    Trash(tmp_path / "trash").empty()
    assert list((tmp_path / "trash").iterdir()) == []


class _PausingTrash(Trash):
    """Its first emptying waits, once done, until the test let it go."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.first_done = threading.Event()
        self.go_on = threading.Event()

    def empty(self) -> None:
        super().empty()
        if not self.first_done.is_set():
            self.first_done.set()
            self.go_on.wait(10)


def test_empty_soon_runs_again_for_what_came_during_a_run(tmp_path: Path) -> None:
    async def scenario() -> None:
        owner = TaskOwner()
        trash = _PausingTrash(tmp_path / "trash")
        trash.move(_tree(tmp_path / "one"))
        trash.empty_soon(owner)
        await asyncio.to_thread(trash.first_done.wait, 10)
        trash.move(_tree(tmp_path / "two"))
        trash.empty_soon(owner)  # during the first run: one more follows it
        assert len(owner) == 1
        trash.go_on.set()
        await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))
        assert list((tmp_path / "trash").iterdir()) == []
        await owner.close()

    asyncio.run(scenario())

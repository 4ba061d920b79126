"""``nbgrader submit`` that keeps a submission private to its student and the instructors.

nbgrader's default submit leaves each submission in the exchange inbound with its folder 0777 and
its files 0644: any account that learns the folder's name can read it, and its random name is the
only protection. ``PrivateSubmit`` writes the same files (the notebooks, ``timestamp.txt``,
``submission_secret.txt``) so that no other student can open them, not even for a moment: folders
2770 and files 0640, in the inbound's group (``instructors``: the class hub's inbound is setgid, so
everything created in it belongs to that group). The copy in the student's own cache, which the
Assignments panel and ``nbgrader fetch_feedback`` read, is nbgrader's as before.

The class hub selects it in the students' system-wide nbgrader config::

    c.ExchangeFactory.submit = "grading.student.exchange.PrivateSubmit"
"""

from __future__ import annotations

import os
import secrets
import shutil

from nbgrader.exchange.default.submit import ExchangeSubmit
from nbgrader.utils import ignore_patterns

FOLDER_MODE = 0o770  # the inbound's setgid bit is inherited by mkdir: 2770
FILE_MODE = 0o640
PRIVATE_UMASK = 0o007  # never created readable by other accounts; never chmod-ed (that would drop setgid)


class PrivateSubmit(ExchangeSubmit):
    """nbgrader's submit, with the submission readable by its student and the instructors' group only."""

    def copy_files(self):
        self.init_release()
        secret = secrets.token_hex(64)
        dest_path = os.path.join(self.inbound_path, self.assignment_filename)
        cached = self.assignment_filename.rsplit("+", 1)[0] if self.add_random_string else self.assignment_filename
        cache_path = os.path.join(self.cache_path, cached)
        self.log.info("Source: %s", self.src_path)
        self.log.info("Destination: %s", dest_path)
        self.check_filename_diff()
        size = self.get_size(self.src_path)
        if size > 1000 * self.coursedir.max_dir_size:
            raise RuntimeError(f"Directory size is too big. Size is {size}, maximum size is "
                               f"{1000 * self.coursedir.max_dir_size}")
        old_umask = os.umask(PRIVATE_UMASK)
        try:
            self._copy_private(self.src_path, dest_path)
            _write_private(os.path.join(dest_path, "timestamp.txt"), self.timestamp)
            _write_private(os.path.join(dest_path, "submission_secret.txt"), secret)
        finally:
            os.umask(old_umask)
        os.makedirs(self.cache_path, exist_ok=True)
        self.do_copy(self.src_path, cache_path)
        for name, text in (("timestamp.txt", self.timestamp), ("submission_secret.txt", secret)):
            with open(os.path.join(cache_path, name), "w") as fh:
                fh.write(text)
        self.log.info("Submitted as: %s %s %s", self.coursedir.course_id, self.coursedir.assignment_id,
                      self.timestamp)

    def _copy_private(self, src: str, dest: str) -> None:
        """Copy ``src`` to a new folder ``dest`` with nbgrader's ignore, include and size rules."""
        ignore = ignore_patterns(exclude=self.coursedir.ignore, include=self.coursedir.include,
                                 max_file_size=self.coursedir.max_file_size, log=self.log)
        os.mkdir(dest, FOLDER_MODE)
        for dirpath, dirnames, filenames in os.walk(src):
            skipped = set(ignore(dirpath, dirnames + filenames))
            dirnames[:] = [d for d in dirnames if d not in skipped]
            target = os.path.join(dest, os.path.relpath(dirpath, src))
            for name in dirnames:
                os.mkdir(os.path.join(target, name), FOLDER_MODE)
            for name in (n for n in filenames if n not in skipped):
                with open(os.path.join(dirpath, name), "rb") as fin, _open_private(os.path.join(target, name)) as fout:
                    shutil.copyfileobj(fin, fout)


def _open_private(path: str):
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE), "wb")


def _write_private(path: str, text: str) -> None:
    with _open_private(path) as fh:
        fh.write(text.encode())

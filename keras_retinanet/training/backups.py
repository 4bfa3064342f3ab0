"""Training backups that survive a crash at any moment: written atomically, the newest two kept, read newest first.

A backup is `epoch-<E>.weights.h5` (the model's and the optimizer's variables after `E` checkpoint intervals) and
`epoch-<E>.json`, written after the weights, each under a temporary name first and renamed into place: a process
killed while writing leaves a temporary file, never a half-written backup under a backup's name. A backup that
still cannot be read (a disk that lost data) is reported, and the previous one is used.
"""

import glob
import json
import logging
import os
import re
import time

from keras_retinanet.errors import InputError

logger = logging.getLogger(__name__)

_NAME = re.compile(r"epoch-([0-9]+)\.json$")


class BackupError(InputError, RuntimeError):
    """No backup in the folder could be read; the message names the files and how to start over."""


class Backups:
    """The backups of one training run in `directory`."""

    def __init__(self, directory, keep=2):
        self.directory, self.keep = os.fspath(directory), keep

    def epochs(self):
        """Epochs with a complete backup, newest first."""
        names = glob.glob(os.path.join(self.directory, "epoch-*.json"))
        return sorted((int(_NAME.search(name).group(1)) for name in names if _NAME.search(name)), reverse=True)

    def _paths(self, epoch):
        stem = os.path.join(self.directory, f"epoch-{epoch}")
        return stem + ".weights.h5", stem + ".json"

    def save(self, model, epoch):
        """Writes the backup after `epoch` epochs, then deletes all but the newest `keep`."""
        os.makedirs(self.directory, exist_ok=True)
        weights, metadata = self._paths(epoch)
        temporary = os.path.join(self.directory, f"writing-{os.getpid()}")
        model.save_weights(temporary + ".weights.h5")
        os.replace(temporary + ".weights.h5", weights)
        with open(temporary + ".json", "w") as file:
            json.dump({"epoch": epoch, "iteration": int(model.optimizer.iterations.numpy())}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary + ".json", metadata)
        for old in self.epochs()[self.keep:]:
            for path in self._paths(old):
                if os.path.exists(path):
                    os.remove(path)

    def restore(self, model):
        """Loads the newest backup that can be read into `model` (whose optimizer must be built) and returns its
        epoch; 0 if there is none. A backup that cannot be read is logged and the one before it tried; if none
        can be read, a `BackupError`: training never starts over silently."""
        failures = []
        for epoch in self.epochs():
            weights, metadata = self._paths(epoch)
            try:
                with open(metadata) as file:
                    if json.load(file)["epoch"] != epoch:
                        raise ValueError(f"{metadata} names another epoch")
                model.load_weights(weights)
            except (OSError, ValueError, KeyError) as error:
                failures.append(f"{weights}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
                logger.warning("backup %s could not be read (%s); trying the one before it", weights, failures[-1])
                continue
            if failures:
                logger.warning("resumed from the older backup %s (epoch %d)", weights, epoch)
            return epoch
        if failures:
            raise BackupError(f"{self.directory}: no backup could be read ({'; '.join(failures)}); to start over, "
                              "rerun with --restart (the backups are moved aside, not deleted)")
        others = sorted(os.listdir(self.directory)) if os.path.isdir(self.directory) else []
        unfinished = [name for name in others if name.startswith("writing-")]
        if len(unfinished) < len(others):
            raise BackupError(f"{self.directory}: holds no backup but other files ({', '.join(others[:5])}): not a "
                              "backup folder of this version; to start over, rerun with --restart (moves it aside)")
        if unfinished:
            logger.warning("%s: the first backup was interrupted while written (%s): starting from the beginning",
                           self.directory, ", ".join(unfinished))
        return 0

    def move_aside(self):
        """Renames the folder to `<directory>.discarded-<time>` (for a restart); returns the new name or None."""
        if not os.path.isdir(self.directory):
            return None
        aside = f"{self.directory}.discarded-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(self.directory, aside)
        return aside

import pathlib
import sys

# importlib import mode puts no test folder on sys.path; the relaunch test reads checkpoints
# with the trainer tests' helpers.
sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "train"))

import pathlib
import sys

# importlib import mode does not put test folders on sys.path; the trainer tests share
# train_helpers.py.
sys.path.insert(0, str(pathlib.Path(__file__).parent))

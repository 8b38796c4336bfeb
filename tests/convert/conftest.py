import pathlib
import sys

# importlib import mode puts no test folder on sys.path; the MEMO import tests share
# memo_release_layout.py.
sys.path.insert(0, str(pathlib.Path(__file__).parent))

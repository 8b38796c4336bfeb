import pathlib
import sys

# importlib import mode puts no test folder on sys.path; the MEMO tests share memo_tiny.py.
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import textwrap

import ml_collections
import pytest

from talkjax import config as cfg
from talkjax.errors import ConfigError


def test_shipped_name_and_path_load_the_same(tmp_path):
  by_name = cfg.load_config("testbed/tiny")
  by_path = cfg.load_config(str(cfg.packaged_experiments_dir() / "testbed" / "tiny.py"))
  assert cfg.flatten(by_name) == cfg.flatten(by_path)
  assert "testbed/tiny" in cfg.list_experiments()


def test_overrides_are_typed():
  c = cfg.load_config("testbed/tiny", ["train.steps=7", "optimizer.lr=0.5", "train.remat=true",
                                       "family=testbed", "optimizer.freeze=('embed_in', 'head')",
                                       "train.log_every=1e2"])
  assert c.train.steps == 7 and isinstance(c.train.steps, int)
  assert c.optimizer.lr == 0.5
  assert c.train.remat is True
  assert c.optimizer.freeze == ("embed_in", "head")
  assert c.train.log_every == 100


@pytest.mark.parametrize("override, message", [
    ("train.steps=abc", "expected an integer"),
    ("train.steps=1.5", "expected an integer"),
    ("optimizer.lr=fast", "expected a number"),
    ("train.remat=maybe", "true or false"),
    ("optimizer.freeze=3j", "expected a list"),
    ("train", "key=value"),
    ("train=3", "names a group"),
])
def test_bad_values_fail_clearly(override, message):
  with pytest.raises(ConfigError, match=message):
    cfg.load_config("testbed/tiny", [override])


def test_unknown_key_suggests_the_closest():
  with pytest.raises(ConfigError) as info:
    cfg.load_config("testbed/tiny", ["optimizer.learning_rate=1"])
  assert "optimizer.lr" not in info.value.what  # the key named is the user's
  assert "unknown config key 'optimizer.learning_rate'" in str(info.value)
  with pytest.raises(ConfigError, match="train.steps"):
    cfg.load_config("testbed/tiny", ["train.stpes=1"])


def test_missing_config_names_close_shipped_ones():
  with pytest.raises(ConfigError, match="testbed/tiny"):
    cfg.load_config("testbed/tny")


def test_config_file_errors(tmp_path):
  no_fn = tmp_path / "a.py"
  no_fn.write_text("x = 1\n")
  with pytest.raises(ConfigError, match="get_config"):
    cfg.load_config(str(no_fn))
  wrong = tmp_path / "b.py"
  wrong.write_text("def get_config():\n  return {'a': 1}\n")
  with pytest.raises(ConfigError, match="ConfigDict"):
    cfg.load_config(str(wrong))
  broken = tmp_path / "c.py"
  broken.write_text("def get_config(:\n")
  with pytest.raises(ConfigError, match="syntax error"):
    cfg.load_config(str(broken))


def test_arg_is_passed_to_get_config(tmp_path):
  f = tmp_path / "arg.py"
  f.write_text(textwrap.dedent("""
      import ml_collections
      def get_config(arg=None):
        return ml_collections.ConfigDict({"size": arg or "none", "n": 1})
  """))
  assert cfg.load_config(f"{f}:small").size == "small"
  assert cfg.load_config(str(f)).size == "none"


def test_loaded_config_is_locked():
  c = cfg.load_config("testbed/tiny")
  with pytest.raises(AttributeError):
    c.train.not_a_key = 1


def test_every_shipped_experiment_loads_and_documents_its_command():
  for name in cfg.list_experiments():
    path, _ = cfg.resolve_config_path(name)
    source = path.read_text()
    doc = source.split('"""')[1]
    assert f"experiments/{name}.py" in doc and "talkjax " in doc, name
    assert isinstance(cfg.load_config(name), ml_collections.ConfigDict)


def test_to_text_lists_every_leaf():
  c = cfg.load_config("testbed/tiny")
  text = cfg.to_text(c)
  assert "train.steps = 40" in text
  assert len(text.splitlines()) == len(cfg.flatten(c))

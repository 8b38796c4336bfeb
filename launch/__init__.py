"""Launchers for multi-process and multi-host runs; installed as talkjax_launch."""

"""Watching and reminding after the first response: each watcher is a stage that starts
one chain of durable timers per incident and the handler of that chain's rounds (one
module each); ``chain.py`` keeps a chain single and its rounds once."""

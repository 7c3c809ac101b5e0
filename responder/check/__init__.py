"""``responder check``: the settings in force and a live check of each integration, one
line each with the fix when it fails (one module per integration, ``runner.py`` runs
them, ``output.py`` prints them)."""

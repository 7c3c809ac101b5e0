"""Rule packs: declarative YAML that classifies alerts and walks the runbook's decision tree.

``loader`` reads and validates packs (errors name the file, the line and the rule) and
compiles them (``engine``); ``engine`` evaluates them; ``testing`` runs rule unit tests.
"""

"""Pure types and the rules of the game: signals, incidents and their transitions.

Nothing in this package does I/O or knows which store, queue or transport carries it.
"""

"""``responder demo``: the product on embedded defaults, with bundled scenarios and fake
evidence, shown in the terminal."""

"""The pages app: rendered pages kept in a cache, dropped when what they show changes.

It never imports the blog: its receivers name their sender lazily, ``"blog.Post"``.
"""

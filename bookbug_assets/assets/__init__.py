"""Assets, one module per domain: style, characters (sprite sheet, hero), pages, book, ledger."""

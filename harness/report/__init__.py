"""From rows to what people read: tables, markdown, the HTML page, plots, compare, publish."""

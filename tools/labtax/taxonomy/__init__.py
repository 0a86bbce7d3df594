"""Reading the taxonomy: YAML with positions (load), the Leaf record (leaf), finding leaves (discover)."""

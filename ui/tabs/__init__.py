"""The page's parts, one module each with its layout and its handlers: the run column (run), the step
explorer (explore), Compare, the explaining tabs (explain), Tokens and Attention (attention) and
Downloads; what they share is passed between them explicitly (shared)."""

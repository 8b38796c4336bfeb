"""DyConv: two-person conversations, each participant filmed and miked on their own (INFP)."""

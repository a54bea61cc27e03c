"""The state the tools stand on: settings, the request context, confirmation tokens, the ledger of used ones,
what previews showed, the audit trail, and Redis where replicas share them."""

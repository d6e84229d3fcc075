"""Pages of the dashboards app: the operations overview, user dashboards, share links."""

"""PostgreSQL: connections, schema, and the SQL of every query."""

"""The storage boundary: the only package with SQL.

db.py owns the connection (SQLite file or PostgreSQL server), the Peewee models, migrations and
transactions; schema.py the schema per engine; dialect.py what differs between the engines; one
module of named queries per area, which the services call (they never write SQL themselves).
"""

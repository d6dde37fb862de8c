"""Field types the tables share: UTC times read cheaply, and ids that are never handed out twice."""

import datetime

from peewee import SQL, AutoField, BigAutoField, DateTimeField, NodeList, SqliteDatabase


class UTCDateTimeField(DateTimeField):
    """Naive UTC datetimes; SQLite's text form is read with fromisoformat, far cheaper than strptime."""

    def python_value(self, value):
        if isinstance(value, str):
            return datetime.datetime.fromisoformat(value)
        return value


class NeverReusedIdField(AutoField):
    """An id that is never handed out twice, even after the newest row is deleted.

    PostgreSQL sequences already behave so; SQLite needs AUTOINCREMENT.
    """

    def ddl(self, ctx):
        node = super().ddl(ctx)
        if isinstance(self.model._meta.database.obj, SqliteDatabase):
            return NodeList((node, SQL("AUTOINCREMENT")))
        return node


class NeverReusedBigIdField(NeverReusedIdField):
    field_type = BigAutoField.field_type

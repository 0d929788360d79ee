"""The mix of scenarios/django-app.toml, written for locust: ten users, each sending its next
request when the last is answered after 10 to 50 ms; reads weighted 10, each kind of
form-posted write weighted 1. Request names are the scenario's, so the two tools' tables line
up (scripts/vs-locust.sh)."""
import itertools

from locust import HttpUser, between, task

_n = itertools.count(1)


def _form(prefix, user):
    n = next(_n)
    return {"name": f"{prefix} {n}", "campaign": f"campaign {user}"}


class Visitor(HttpUser):
    wait_time = between(0.01, 0.05)
    _users = itertools.count(0)

    def on_start(self):
        self.user_number = next(Visitor._users)

    @task(10)
    def read(self):
        self.client.get("/read/", name="read")

    @task(1)
    def write(self):
        self.client.post("/write/", data=_form("write", self.user_number), name="write")

    @task(1)
    def read_write_transaction(self):
        self.client.post(
            "/read_write_transaction/",
            data=_form("read-write", self.user_number),
            name="read_write_transaction",
        )

    @task(1)
    def read_write_immediate(self):
        self.client.post(
            "/read_write_immediate/",
            data=_form("read-write-immediate", self.user_number),
            name="read_write_immediate",
        )

    @task(1)
    def write_read_transaction(self):
        self.client.post(
            "/write_read_transaction/",
            data=_form("write-read", self.user_number),
            name="write_read_transaction",
        )

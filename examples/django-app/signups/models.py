"""One table: a person signed up for a campaign."""
from django.db import models


class Signup(models.Model):
    name = models.CharField(max_length=200)
    campaign = models.CharField(max_length=200, db_index=True)
    created = models.DateTimeField(auto_now_add=True)

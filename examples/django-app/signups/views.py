"""The views, as a team writes them. Writes come as HTML form posts (request.POST).

- read: the latest sign-ups (autocommit, no transaction).
- write: one sign-up (autocommit).
- read_write_transaction: count a campaign's sign-ups, then add one, inside
  transaction.atomic(): Django sends a plain (deferred) BEGIN, so the read takes a shared
  lock and the write must upgrade it, which SQLite refuses at once while another connection
  writes, whatever the timeout ("database is locked").
- read_write_immediate: the same on the "immediate" alias (transaction_mode IMMEDIATE):
  BEGIN IMMEDIATE takes the write lock first and waits for it.
- write_read_transaction: add one, then count, inside atomic(): the first statement already
  takes the write lock.
Every view is exempt from CSRF: it is an API for a load generator, not a browser form.
"""
from django.db import transaction
from django.http import HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import Signup


def _fields(request):
    name = request.POST.get("name", "").strip()
    campaign = request.POST.get("campaign", "").strip()
    if not name or not campaign:
        return None
    return name, campaign


@require_GET
def read(request):
    latest = list(Signup.objects.order_by("-id").values("id", "name", "campaign")[:20])
    return JsonResponse({"signups": latest})


@csrf_exempt
@require_POST
def write(request):
    fields = _fields(request)
    if fields is None:
        return HttpResponseBadRequest("name and campaign are required")
    signup = Signup.objects.create(name=fields[0], campaign=fields[1])
    return JsonResponse({"id": signup.id}, status=201)


def _read_then_write(fields, using):
    with transaction.atomic(using=using):
        seen = Signup.objects.using(using).filter(campaign=fields[1]).count()
        signup = Signup.objects.using(using).create(name=fields[0], campaign=fields[1])
    return JsonResponse({"id": signup.id, "before": seen}, status=201)


@csrf_exempt
@require_POST
def read_write_transaction(request):
    fields = _fields(request)
    if fields is None:
        return HttpResponseBadRequest("name and campaign are required")
    return _read_then_write(fields, "default")


@csrf_exempt
@require_POST
def read_write_immediate(request):
    fields = _fields(request)
    if fields is None:
        return HttpResponseBadRequest("name and campaign are required")
    return _read_then_write(fields, "immediate")


@csrf_exempt
@require_POST
def write_read_transaction(request):
    fields = _fields(request)
    if fields is None:
        return HttpResponseBadRequest("name and campaign are required")
    with transaction.atomic():
        signup = Signup.objects.create(name=fields[0], campaign=fields[1])
        total = Signup.objects.filter(campaign=fields[1]).count()
    return JsonResponse({"id": signup.id, "after": total}, status=201)

"""Views of the example: a flag read, sync and async events, and an error that gets captured."""

from django.http import HttpResponse, JsonResponse


def index(request):
    """Events here carry the request's id, session, URL, method, path, IP and user agent."""
    request.productos.capture("home viewed")
    return JsonResponse({
        "user": request.productos.distinct_id,
        "new_home": request.productos.feature_enabled("new-home"),  # None when unknown
    })


async def live(request):
    """Async views get the same context (the middleware runs natively async under ASGI)."""
    request.productos.capture("live page viewed")
    return JsonResponse({"user": request.productos.distinct_id})


def boom(request):
    """Captured as $exception by the middleware; Django then answers 500 as usual."""
    raise RuntimeError("something broke")


def health(request):
    """Left out by the REQUEST_FILTER setting."""
    return HttpResponse("ok")

"""Domain errors as HTTP answers, one mapping for every route: a 422 names each wrong field."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from central.domain.lifecycle import InvalidTransition
from central.domain.permissions import Forbidden
from central.services.tickets import BadInput, MissingInput, TicketNotFound


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's errors as {"field": "body.location", "problem": "..."}, every one of them."""
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"field": ".".join(loc) or "body", "problem": str(e.get("msg", "invalid"))})
    return out


def unprocessable(fields: list[dict[str, str]]) -> HTTPException:
    names = ", ".join(f["field"] for f in fields)
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        {"message": f"fix these fields: {names}", "fields": fields},
    )


@contextmanager
def domain_errors() -> Iterator[None]:
    try:
        yield
    except TicketNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except Forbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except MissingInput as exc:
        raise unprocessable(
            [
                {"field": f"body.{f}", "problem": f"required to {exc.action.value}"}
                for f in exc.fields
            ]
        ) from None
    except BadInput as exc:
        raise unprocessable([{"field": f"body.{exc.field}", "problem": str(exc)}]) from None


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = field_errors(list(exc.errors()))
        names = ", ".join(f["field"] for f in fields)
        return JSONResponse(
            {"detail": {"message": f"fix these fields: {names}", "fields": fields}},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

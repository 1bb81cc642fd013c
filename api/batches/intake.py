"""Reading a batch request: a JSON body with the dataset as a list, or a multipart form
with the dataset as the file `file` (JSONL or CSV) and the options as fields.

The body is only collected on the event loop (`read_raw_batch`); decoding and parsing a
dataset of many thousand rows happens in the route's worker thread (`parse`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from api.batches.schemas import BatchCreate, BatchForm, BatchOptions
from api.errors import ApiError, Unprocessable, field_error
from shared.datasets import Dataset, DatasetUnreadable, detect_format, parse_file, parse_items

FILE_FIELD = "file"
MAX_NAME_CHARS = 200
M = TypeVar("M", bound=BaseModel)


class UnsupportedMediaType(ApiError):
    status_code = 415


@dataclass(frozen=True, slots=True)
class RawBatch:
    json_body: bytes | None = None
    fields: dict[str, str] | None = None
    file: bytes | None = None
    filename: str | None = None
    file_type: str | None = None


@dataclass(frozen=True, slots=True)
class BatchRequest:
    options: BatchOptions
    dataset: Dataset
    source: str  # "dataset" (a JSON list in the body) or "file" (an upload)
    filename: str | None = None


async def read_raw_batch(request: Request) -> RawBatch:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        async with request.form(max_files=1, max_fields=20) as form:
            fields: dict[str, str] = {}
            upload: UploadFile | None = None
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key != FILE_FIELD:
                        raise Unprocessable(
                            [field_error(key, f"upload the dataset as the field '{FILE_FIELD}'")]
                        )
                    upload = value
                else:
                    fields[key] = value
            if upload is None:
                message = f"upload the dataset (JSONL or CSV) as the form field '{FILE_FIELD}'"
                raise Unprocessable([field_error(FILE_FIELD, message)])
            return RawBatch(
                fields=fields,
                file=await upload.read(),
                # It names the batch by default: it must fit the column, without NUL.
                filename=(upload.filename or "").replace("\x00", "")[:MAX_NAME_CHARS] or None,
                file_type=upload.content_type,
            )
    if media in ("application/json", ""):
        return RawBatch(json_body=await request.body())
    raise UnsupportedMediaType(
        "send JSON (application/json) with the dataset as a list, or a multipart form "
        f"(multipart/form-data) with the dataset file as '{FILE_FIELD}'"
    )


RawBatchDep = Annotated[RawBatch, Depends(read_raw_batch)]


def _validated(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(
            [
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False)
            ]
        ) from None


def _unreadable(field: str, exc: DatasetUnreadable) -> Unprocessable:
    return Unprocessable([field_error(field, str(exc))])


def parse(raw: RawBatch) -> BatchRequest:
    """The options and the dataset's rows; 422 naming the field for a bad option or a
    dataset that cannot be read at all. Bad rows are kept as problems of the dataset."""
    if raw.json_body is not None:
        try:
            data = json.loads(raw.json_body)
        except (ValueError, RecursionError):
            raise Unprocessable(
                [{"loc": ["body"], "msg": "the body is not valid JSON", "type": "json_invalid"}]
            ) from None
        body = _validated(BatchCreate, data)
        try:
            dataset = parse_items(body.dataset)
        except DatasetUnreadable as exc:
            raise _unreadable("dataset", exc) from None
        options = BatchOptions.model_validate(body.model_dump(exclude={"dataset"}))
        return BatchRequest(options=options, dataset=dataset, source="dataset")
    form = _validated(BatchForm, raw.fields or {})
    try:
        fmt = detect_format(explicit=form.format, filename=raw.filename, content_type=raw.file_type)
        dataset = parse_file(raw.file or b"", format=fmt)
    except DatasetUnreadable as exc:
        raise _unreadable(FILE_FIELD, exc) from None
    options = BatchOptions.model_validate(form.model_dump(exclude={"format"}))
    return BatchRequest(options=options, dataset=dataset, source="file", filename=raw.filename)

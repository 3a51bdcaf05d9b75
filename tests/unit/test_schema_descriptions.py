"""The JSON Schemas and the AsyncAPI document are the analysts' data dictionary: every field of
every model in schemas/events says what it means. Fails naming each field that does not."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from pydantic import BaseModel

import schemas.events
from schemas import ALL_EVENTS


def event_module_models() -> list[type[BaseModel]]:
    found = []
    for info in pkgutil.iter_modules(schemas.events.__path__):
        module = importlib.import_module(f"schemas.events.{info.name}")
        found += [cls for cls in vars(module).values()
                  if inspect.isclass(cls) and issubclass(cls, BaseModel) and cls.__module__ == module.__name__]
    return found


MODELS = event_module_models()


def test_the_models_checked_include_every_event():
    assert set(ALL_EVENTS) <= set(MODELS)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_description(model):
    properties = model.model_json_schema(mode="serialization")["properties"]
    undocumented = [name for name, prop in properties.items() if not (prop.get("description") or "").strip()]
    assert not undocumented, (f"{model.__name__}: add Field(description=...) to {', '.join(undocumented)} "
                              f"(then `make schemas` to regenerate the JSON Schemas and AsyncAPI document)")

from collections.abc import Callable
from typing import Any

class SendMethod:
    pure: Callable[..., Any]
    def __init__(self, pure: Callable[..., Any], robust: bool = False) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., Any]: ...

class InitHook:
    inner: Callable[..., Any]
    def __init__(
        self,
        inner: Callable[..., Any],
        pre: object,
        post: object,
        before: Callable[[Any, tuple[Any, ...], dict[str, Any]], object],
        after: Callable[[Any], object],
        skip: str,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., Any]: ...

import os
from typing import Any, Iterable, Literal, Optional, Sequence, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

Texts = Union[str, Iterable[str]]

class Model:
    def __init__(
        self,
        path_or_hub_id: Union[str, os.PathLike[str], None] = None,
        precision: Literal["f32", "bf16", "int8"] = "f32",
        threads: Optional[int] = None,
    ) -> None: ...
    @staticmethod
    def load(
        path_or_hub_id: Union[str, os.PathLike[str], None] = None,
        precision: Literal["f32", "bf16", "int8"] = "f32",
        threads: Optional[int] = None,
    ) -> "Model": ...
    @overload
    def encode(
        self,
        texts: str,
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        normalize_embeddings: Optional[bool] = None,
        truncate_dim: Optional[int] = None,
        batch_size: int = 32,
        is_query: bool = False,
    ) -> npt.NDArray[np.float32]: ...
    @overload
    def encode(
        self,
        texts: Iterable[str],
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        normalize_embeddings: Optional[bool] = None,
        truncate_dim: Optional[int] = None,
        batch_size: int = 32,
        is_query: bool = False,
    ) -> Union[npt.NDArray[np.float32], list[npt.NDArray[np.float32]]]: ...
    def encode_query(
        self,
        texts: Texts,
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        normalize_embeddings: Optional[bool] = None,
        truncate_dim: Optional[int] = None,
        batch_size: int = 32,
    ) -> Any: ...
    def encode_document(
        self,
        texts: Texts,
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        normalize_embeddings: Optional[bool] = None,
        truncate_dim: Optional[int] = None,
        batch_size: int = 32,
    ) -> Any: ...
    def fill_mask(self, texts: Texts, top_k: int = 5, max_length: Optional[int] = None) -> Any: ...
    def classify(
        self,
        texts: Texts,
        pairs: Optional[Texts] = None,
        aggregate: bool = False,
        max_length: Optional[int] = None,
    ) -> Any: ...
    def rerank(
        self,
        query: str,
        documents: Iterable[str],
        top_k: Optional[int] = None,
        raw_scores: bool = False,
        return_documents: bool = True,
    ) -> list[dict[str, Any]]: ...
    def predict(
        self,
        pairs: Union[Sequence[str], Iterable[Sequence[str]]],
        raw_scores: bool = False,
        batch_size: int = 32,
    ) -> Union[float, npt.NDArray[np.float32]]: ...
    def tokenize(
        self, texts: Texts, pairs: Optional[Texts] = None, max_length: Optional[int] = None
    ) -> Any: ...
    @property
    def dimension(self) -> int: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def format(self) -> str: ...
    @property
    def max_seq_length(self) -> int: ...
    @max_seq_length.setter
    def max_seq_length(self, value: Optional[int]) -> None: ...
    @property
    def prompts(self) -> dict[str, str]: ...
    @property
    def default_prompt_name(self) -> Optional[str]: ...
    @property
    def similarity_fn_name(self) -> Optional[str]: ...
    @property
    def path(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def threads(self) -> Optional[int]: ...

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InferenceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INFERENCE_MODE_UNSPECIFIED: _ClassVar[InferenceMode]
    INFERENCE_MODE_RESIZE: _ClassVar[InferenceMode]
    INFERENCE_MODE_NATIVE: _ClassVar[InferenceMode]
    INFERENCE_MODE_SLIDE: _ClassVar[InferenceMode]

class MaskFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASK_FORMAT_UNSPECIFIED: _ClassVar[MaskFormat]
    MASK_FORMAT_PNG: _ClassVar[MaskFormat]
    MASK_FORMAT_RAW: _ClassVar[MaskFormat]

class MaskDtype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASK_DTYPE_UNSPECIFIED: _ClassVar[MaskDtype]
    MASK_DTYPE_UINT8: _ClassVar[MaskDtype]
    MASK_DTYPE_UINT16: _ClassVar[MaskDtype]
INFERENCE_MODE_UNSPECIFIED: InferenceMode
INFERENCE_MODE_RESIZE: InferenceMode
INFERENCE_MODE_NATIVE: InferenceMode
INFERENCE_MODE_SLIDE: InferenceMode
MASK_FORMAT_UNSPECIFIED: MaskFormat
MASK_FORMAT_PNG: MaskFormat
MASK_FORMAT_RAW: MaskFormat
MASK_DTYPE_UNSPECIFIED: MaskDtype
MASK_DTYPE_UINT8: MaskDtype
MASK_DTYPE_UINT16: MaskDtype

class SegmentRequest(_message.Message):
    __slots__ = ("image", "frame_id", "mode", "mask_format", "timeout_ms", "model", "format", "classes", "tolerance", "min_area")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MASK_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    MIN_AREA_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    frame_id: int
    mode: InferenceMode
    mask_format: MaskFormat
    timeout_ms: int
    model: str
    format: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    tolerance: float
    min_area: float
    def __init__(self, image: _Optional[bytes] = ..., frame_id: _Optional[int] = ..., mode: _Optional[_Union[InferenceMode, str]] = ..., mask_format: _Optional[_Union[MaskFormat, str]] = ..., timeout_ms: _Optional[int] = ..., model: _Optional[str] = ..., format: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., tolerance: _Optional[float] = ..., min_area: _Optional[float] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("format", "content_type", "data", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    format: str
    content_type: str
    data: bytes
    fields: _containers.ScalarMap[str, str]
    def __init__(self, format: _Optional[str] = ..., content_type: _Optional[str] = ..., data: _Optional[bytes] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Mask(_message.Message):
    __slots__ = ("format", "dtype", "width", "height", "data")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    format: MaskFormat
    dtype: MaskDtype
    width: int
    height: int
    data: bytes
    def __init__(self, format: _Optional[_Union[MaskFormat, str]] = ..., dtype: _Optional[_Union[MaskDtype, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ClassStat(_message.Message):
    __slots__ = ("id", "label", "pixels", "fraction")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    pixels: int
    fraction: float
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ..., pixels: _Optional[int] = ..., fraction: _Optional[float] = ...) -> None: ...

class FrameStatus(_message.Message):
    __slots__ = ("code", "error", "message", "retry_after_s")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    code: int
    error: str
    message: str
    retry_after_s: int
    def __init__(self, code: _Optional[int] = ..., error: _Optional[str] = ..., message: _Optional[str] = ..., retry_after_s: _Optional[int] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("frame_id", "status", "mask", "classes", "timings", "model", "output")
    class TimingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    status: FrameStatus
    mask: Mask
    classes: _containers.RepeatedCompositeFieldContainer[ClassStat]
    timings: _containers.ScalarMap[str, float]
    model: str
    output: Output
    def __init__(self, frame_id: _Optional[int] = ..., status: _Optional[_Union[FrameStatus, _Mapping]] = ..., mask: _Optional[_Union[Mask, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[ClassStat, _Mapping]]] = ..., timings: _Optional[_Mapping[str, float]] = ..., model: _Optional[str] = ..., output: _Optional[_Union[Output, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "state", "default", "version", "source_sha256", "error", "reloading")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RELOADING_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    default: bool
    version: int
    source_sha256: str
    error: str
    reloading: bool
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., default: _Optional[bool] = ..., version: _Optional[int] = ..., source_sha256: _Optional[str] = ..., error: _Optional[str] = ..., reloading: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("default", "models")
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    default: str
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    def __init__(self, default: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ...) -> None: ...

class ModelClass(_message.Message):
    __slots__ = ("id", "label", "color")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    color: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ..., color: _Optional[_Iterable[int]] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("name", "variant", "num_labels", "classes", "inference_height", "inference_width", "mode", "mask_dtype", "providers", "version", "source_sha256", "details", "details_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    NUM_LABELS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MASK_DTYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    variant: str
    num_labels: int
    classes: _containers.RepeatedCompositeFieldContainer[ModelClass]
    inference_height: int
    inference_width: int
    mode: str
    mask_dtype: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    version: int
    source_sha256: str
    details: _struct_pb2.Struct
    details_json: str
    def __init__(self, name: _Optional[str] = ..., variant: _Optional[str] = ..., num_labels: _Optional[int] = ..., classes: _Optional[_Iterable[_Union[ModelClass, _Mapping]]] = ..., inference_height: _Optional[int] = ..., inference_width: _Optional[int] = ..., mode: _Optional[str] = ..., mask_dtype: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ..., source_sha256: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., details_json: _Optional[str] = ...) -> None: ...

# Written for spurbench's tests in the layout of imagenet-testbed's plotting/model_types.py
# (a dict literal, then loops that add numbered models), with the types that file gives these
# models at the commit SOURCES.md names. Parsed by scripts/import_testbed_results.py, never run.
from enum import Enum


class ModelTypes(Enum):
    STANDARD = ('Standard training', 'tab:blue')
    ROBUST_INTV = ('Other robustness intervention', 'tab:brown')
    MORE_DATA = ('Trained with more data', 'tab:green')
    LOW_ACCURACY_CNN = ('Low Accuracy CNN', 'tab:cyan')

model_types_map = {
'alexnet': ModelTypes.STANDARD,
'instagram-resnext101_32x8d': ModelTypes.MORE_DATA,
'resnet18': ModelTypes.STANDARD,
'resnet50': ModelTypes.STANDARD,
'resnet50-vtab': ModelTypes.STANDARD,
'resnet50_augmix': ModelTypes.ROBUST_INTV,
}

for i in range(5):
    model_types_map[f"resnet18_50k_{i}_epochs"] =  ModelTypes.LOW_ACCURACY_CNN

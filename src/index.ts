// fastvision: the fast.ai way of training image classifiers, on libtorch.
export * from './torch/index.js';
export * from './vision/index.js';
export * from './learn/index.js';
export { FastvisionError, InputError, exitCodeOf, type ErrorKind } from './util/errors.js';
export { exportOnnx, serve, predictorFor, type ExportOnnxOptions, type ExportedFiles, type ServeOptions, type ServedModel, type Runtime } from './deploy/api.js';
export type { ExportedModel } from './deploy/export-model.js';
export type { DeployMetadata } from './deploy/metadata.js';
export type { Predictor } from './deploy/predictor.js';
export type { DynamicBatcher } from './deploy/server.js';
export { Report } from './report/html.js';
export { startStudio, fileInside, type StudioOptions, type RunningStudio } from './studio/server.js';
export type { StudioDataSpec } from './studio/data-view.js';
export { StudioRuns, RunBusyError, type RunState, type RunEvent, type RunStatus } from './studio/runs.js';
export { parseRunSettings, SettingsError, STUDIO_RUN_DEFAULTS, type StudioRunSettings } from './studio/run-settings.js';
export type { ChildMessage } from './studio/train-child.js';

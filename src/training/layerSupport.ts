/**
 * Which tfjs Layers a TabTrain job may contain, and which tfjs kernels each runs when a unit trains it
 * (forward, backward; the loss and the optimizers' kernels are the MNIST preset's and are audited with it).
 * `checkModelForBundle` holds a model against a kernel bundle: the default bundle runs a layer only when
 * every kernel it dispatches is in the op audit (src/kernels/opAudit.ts, docs/kernels.md), exact mode only
 * when every kernel has an exact form or is a pure copy (registerExact.ts).
 */
import { EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../kernels/config.ts'
import { KERNEL_AUDIT } from '../kernels/opAudit.ts'
import { EXACT_KERNELS, EXACT_PASSTHROUGH_KERNELS } from '../kernels/registerExact.ts'
import { ModelFileError } from './modelFileError.ts'

/** Kernels per layer class, as tfjs-layers 4.22 calls them on the WebGPU backend during a unit. */
export const LAYER_KERNELS: Record<string, readonly string[]> = {
  InputLayer: [],
  // dot() with bias (and relu) fused; gradients are BatchMatMul and a Sum over the batch for the bias.
  Dense: ['_FusedMatMul', 'BatchMatMul', 'Add', 'Sum', 'Reshape'],
  Flatten: ['Reshape'],
  Reshape: ['Reshape'],
  // Conv2D then a bias Add; gradients for the filter, and for the input when a layer below trains too.
  Conv2D: ['Conv2D', 'Add', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'Sum', 'Reshape'],
  MaxPooling2D: ['MaxPool', 'MaxPoolGrad'],
}

/** Activations allowed inside a layer, with the kernels they add (forward and gradient). */
export const ACTIVATION_KERNELS: Record<string, readonly string[]> = {
  linear: [],
  relu: ['Relu', 'Step', 'Multiply'],
}

/**
 * Layers refused outright, with why. Units call the model in inference mode (`model.apply(x)`), and a
 * checker must reproduce a unit bit for bit, so a layer that draws random numbers or keeps running
 * statistics has no place in a job: it would either silently do nothing or make units unrepeatable.
 */
export const REFUSED_LAYERS: Record<string, string> = {
  Dropout: 'draws a random mask each step, which no checker could reproduce (and units call the model in inference mode, where it does nothing): remove it',
  SpatialDropout1D: 'random masks cannot be reproduced by a checker: remove it',
  SpatialDropout2D: 'random masks cannot be reproduced by a checker: remove it',
  GaussianNoise: 'random noise cannot be reproduced by a checker: remove it',
  GaussianDropout: 'random noise cannot be reproduced by a checker: remove it',
  AlphaDropout: 'random masks cannot be reproduced by a checker: remove it',
  BatchNormalization: 'keeps running statistics outside the trained weights, which averaged units cannot update: remove it',
  Embedding:
    'its gradient is a scatter-add whose order the GPU does not fix; give the data set a one-hot input encoding and use a Dense layer instead',
}

export interface TopologyLayer {
  name: string
  className: string
  config: Record<string, unknown>
}

/** The layers of a Sequential or functional `modelTopology` (what `model.toJSON()` / `model.save()` write). */
export function topologyLayers(topology: Record<string, unknown>): TopologyLayer[] {
  // model.save() writes {class_name, config, keras_version, backend}; some writers nest it under model_config.
  const root = (topology.model_config ?? topology) as { class_name?: unknown; config?: unknown }
  if (root.class_name !== 'Sequential' && root.class_name !== 'Model' && root.class_name !== 'Functional') {
    throw new ModelFileError('bad_topology', `model.json: modelTopology.class_name is ${JSON.stringify(root.class_name)}, not Sequential or Model`)
  }
  const config = root.config as { layers?: unknown } | unknown[] | undefined
  // Old Sequential topologies are a bare list of layers.
  const layers = Array.isArray(config) ? config : (config as { layers?: unknown } | undefined)?.layers
  if (!Array.isArray(layers) || layers.length === 0) throw new ModelFileError('bad_topology', 'model.json: modelTopology has no layers')
  return layers.map((layer, i) => {
    const l = layer as { class_name?: unknown; config?: unknown; name?: unknown }
    const cfg = (l.config ?? {}) as Record<string, unknown>
    const name = typeof cfg.name === 'string' ? cfg.name : typeof l.name === 'string' ? l.name : `#${i}`
    if (typeof l.class_name !== 'string') throw new ModelFileError('bad_topology', `model.json: layer ${name} has no class_name`)
    return { name, className: l.class_name, config: cfg }
  })
}

/** Checks every layer's class and activation; refuses unknown, random and stateful layers by name. */
export function checkLayers(layers: TopologyLayer[]): void {
  const last = layers[layers.length - 1]!
  if (last.config.activation !== undefined && last.config.activation !== 'linear') {
    throw new ModelFileError(
      'bad_output',
      `layer "${last.name}" (${last.className}): the last layer must be linear (activation "linear"), because training applies softmax cross-entropy to the model's outputs; it has "${String(last.config.activation)}"`,
    )
  }
  for (const layer of layers) {
    const refused = REFUSED_LAYERS[layer.className]
    if (refused) throw new ModelFileError('nondeterministic_layer', `layer "${layer.name}" (${layer.className}): ${refused}`)
    if (!LAYER_KERNELS[layer.className]) {
      throw new ModelFileError(
        'unknown_layer',
        `layer "${layer.name}" (${layer.className}): not a layer TabTrain trains; supported: ${Object.keys(LAYER_KERNELS).join(', ')}`,
      )
    }
    const activation = layer.config.activation
    if (activation !== undefined && (typeof activation !== 'string' || !ACTIVATION_KERNELS[activation])) {
      throw new ModelFileError(
        'unknown_layer',
        `layer "${layer.name}" (${layer.className}): activation ${JSON.stringify(activation)} is not supported; use ${Object.keys(ACTIVATION_KERNELS).join(' or ')}`,
      )
    }
  }
}

/** The kernels a layer runs: its class's and its activation's. */
export function layerKernels(layer: TopologyLayer): string[] {
  const activation = typeof layer.config.activation === 'string' ? layer.config.activation : 'linear'
  return [...(LAYER_KERNELS[layer.className] ?? []), ...(ACTIVATION_KERNELS[activation] ?? [])]
}

const EXACT_COVERED = new Set<string>([...EXACT_KERNELS, ...EXACT_PASSTHROUGH_KERNELS])

/**
 * Refuses (ModelFileError `unsupported_by_bundle`) a topology the bundle cannot run: in the default bundle
 * a layer whose kernels the op audit has not checked for determinism, in exact mode a layer with no exact
 * form, naming the layer and the kernels.
 */
export function checkModelForBundle(topology: Record<string, unknown>, bundle: string): void {
  const layers = topologyLayers(topology)
  checkLayers(layers)
  if (bundle !== KERNEL_BUNDLE && bundle !== EXACT_KERNEL_BUNDLE) {
    throw new ModelFileError('unsupported_by_bundle', `kernel bundle "${bundle}" is not one this coordinator runs (default or exact)`)
  }
  const exact = bundle === EXACT_KERNEL_BUNDLE
  for (const layer of layers) {
    const kernels = layerKernels(layer)
    const missing = kernels.filter((k) => (exact ? !EXACT_COVERED.has(k) : !(k in KERNEL_AUDIT)))
    if (missing.length === 0) continue
    throw new ModelFileError(
      'unsupported_by_bundle',
      exact
        ? `layer "${layer.name}" (${layer.className}) needs ${missing.join(', ')}, which exact mode has no exact form for yet (it has matmuls, element-wise ops, Sum and Max: Dense, Flatten and Reshape with relu or linear); choose the default kernel bundle`
        : `layer "${layer.name}" (${layer.className}) needs ${missing.join(', ')}, which the op audit (docs/kernels.md) has not checked for determinism`,
    )
  }
}

import type { Hash } from '../protocol/hash.ts'

/**
 * Pinned output digests of the kernel self-test (kernelSuite.ts), by bundle role and case name, as
 * measured on SwiftShader (Dawn in Node and headless Chromium give the same bits). Both the Node test
 * (src/kernels/kernelSuite.test.ts) and the Chromium one (e2e/kernels.test.ts) compare against this
 * object, so a kernel change that moves any output bit fails both until it is re-pinned deliberately:
 *
 *   PRINT_DIGESTS=1 npx vitest run --project unit src/kernels/kernelSuite.test.ts
 *
 * prints the object to paste here. Other devices (real GPUs) may legitimately differ for the default
 * bundle; the exact bundle's outputs are meant to be the same everywhere.
 */
export const PINNED_KERNEL_DIGESTS: Record<string, Record<string, Hash>> = {
  "default": {
    "matmul fused bias+relu 32x784 @ 784x64": "0xbeb3a09ce46cb230c83cb9de3308ff208d78c7623fcbf29fef5cb823da6d21ef",
    "matmul fused bias 32x64 @ 64x10": "0x4bce72962193a21ac00a909875460e3d6bd0ed5212f3992b1dd59343f98525c0",
    "matmul grad dW1 32x784^T @ 32x64": "0xcbb9d6897555cb77482d27779b7ceac7faf30f135b8e99fd86d0b3c69f8f2922",
    "matmul grad dW2 32x64^T @ 32x10": "0x75c5e51a6072368cf2b6bdfbe8e80b677617a9939648f9e3b415e805ecaee91f",
    "matmul grad dh 32x10 @ 64x10^T": "0x5d7692de2edcbfb4965f687ed4ec7b854a8345f33f023bf7616d878da5522b90",
    "add bias broadcast [32,10] + [10]": "0x96f9c6023e7b79b5193c51488e83ea55ffc73bb30e3be39cf62a345c6c2306ff",
    "add same shape [32,64]": "0xe4485b195df79a4a6b40491654163499e63d098b9d04aaaf2bf7821c535dfc07",
    "sub row broadcast [32,10] - [32,1]": "0xc50d8124398546e3e706955f9a085c32a6d6a0ce62d1a7c9797fc07d58d26b23",
    "multiply same shape [32,64]": "0xf4b91468fb23d0dfa6d20fe8bd66e46d0bfbaac3256ddfd663d2efc8e92fda52",
    "multiply by scalar [32,64] · c": "0x0591cb171776ff7e82728383c6015a760d6b9c306f16cfeca2926cd9df390d29",
    "realdiv row broadcast [32,10] / [32,1]": "0x80ebf736bfa2817e040b8c28ede6c3181569c1cff37bef632e6a1d539a409b7d",
    "realdiv same shape [32,64]": "0x910036e9630dd325e6a15bf85e7bde7c4807bbe6fa79dfa76e421df94d4bcb48",
    "square [32,64]": "0xf06d74cf5d8af2d0ca2618dd535f4ebbfde2379a76baecfd6213b07d40738db8",
    "sqrt [32,64]": "0x65cce1ad4179a3b78caa766afa4e4440323b5c59c74ff729ff8a34b5154d5cc5",
    "exp [32,64]": "0xd4ba02184731e7cb41350d366b5605550c485708c140d9e976ab1500464cd041",
    "log [32,64]": "0x00e22666afad48adab15590cfc1d197668c708bcc12c4636097429b64c1805fc",
    "relu [32,64]": "0xb27b1fd728c079fbc71e11768daddb3e86fab52c81fbcd79a28a0cce42ad7837",
    "step [32,64]": "0x35a41301b82188082bde16d87f6aeb5c6a7ff80bf7e3fcbdf6f5ab508366a876",
    "neg [32,64]": "0x431552f13fc31bfd78b7b4cc93818fc04cfc4e174d086be9ccaeb09638681b14",
    "max over classes [32,10] axis 1": "0xe2a812a01647da5210c65f7c1dec8141b7235c2a607ca8bffa25fbb4806a3e74",
    "sum over classes [32,10] axis 1": "0x3e35810c657771814da99fb77cfda5b52f880d37a3701afe9caf533134c3c80e",
    "sum over batch [32,64] axis 0": "0x2ff5fa7f91c2571eee6f6ada52786897be4eec70b941d2882b8c9cdf29ad7b00",
    "softmax cross-entropy loss and gradient [32,10]": "0x20c923544942869143caa880c1ce2cc5bffc2c983a5565032ac41d4d197772c0",
    "adam two steps [784,64]": "0xc3d9b598f60bc46eae63c8823df70dd99b56bbf73062196502668a67c8501069"
  },
  "exact": {
    "matmul fused bias+relu 32x784 @ 784x64": "0xab02e440f7b1c5b480afd490a0b1ab4642c7daaca8df520a8c17a113ef31942b",
    "matmul fused bias 32x64 @ 64x10": "0x51e291de80c3e9f251e3294648f18b558142a2a0e736de04fb5b011e4119f8d5",
    "matmul grad dW1 32x784^T @ 32x64": "0xcebc17f6cadb746867b3d2504d2aa49ad0be22578215240f3f0084da7a40cf51",
    "matmul grad dW2 32x64^T @ 32x10": "0x16134d4a57abd99826fa98de3cdcb270964f82f5b7f7c0b43742bae3104a3bb8",
    "matmul grad dh 32x10 @ 64x10^T": "0xb5bb21203fe3f56b9e9e4932f992a0f8d884f41240e279f90413c5fe7484c813",
    "add bias broadcast [32,10] + [10]": "0xf6d5ab76027798f934688b1d58bdd3e9b528fee60dc2a562d4febd396eb3426f",
    "add same shape [32,64]": "0xe4485b195df79a4a6b40491654163499e63d098b9d04aaaf2bf7821c535dfc07",
    "sub row broadcast [32,10] - [32,1]": "0x269752b912e70f4f7f3be79bd7cbcd494e017b4286df80faa34d5b9f37835952",
    "multiply same shape [32,64]": "0x7daf2811f1ccdc428b79d88f50da39d9bf227a7ca78fbe595d952cae27fb7c52",
    "multiply by scalar [32,64] · c": "0x3678c613beaa9b154c9e23260f431596827f5fa3d47685cdd0616899181afec7",
    "realdiv row broadcast [32,10] / [32,1]": "0x56abb9900c87546f091b4db7a506e8e906da60e2285ed628e595f36f9b0594e0",
    "realdiv same shape [32,64]": "0x910036e9630dd325e6a15bf85e7bde7c4807bbe6fa79dfa76e421df94d4bcb48",
    "square [32,64]": "0xf06d74cf5d8af2d0ca2618dd535f4ebbfde2379a76baecfd6213b07d40738db8",
    "sqrt [32,64]": "0x65cce1ad4179a3b78caa766afa4e4440323b5c59c74ff729ff8a34b5154d5cc5",
    "exp [32,64]": "0xc527addeaeb7e50822654f58ab90424e26b1c0ff1dae95bb3b8e65db1b3aa8b5",
    "log [32,64]": "0x6487696d4e3d5d8df1ecf6fe70f03a93b22766934c3ef27821d39591074a43e8",
    "relu [32,64]": "0xb5873a26b63eb7bf9ab752d279f5cdb3d859bdfef57b05f6146705ae54610960",
    "step [32,64]": "0x35a41301b82188082bde16d87f6aeb5c6a7ff80bf7e3fcbdf6f5ab508366a876",
    "neg [32,64]": "0x23230a93ca2065e7636c68d068b9c634e257f9f7dfe40ea91c5d169445edc5c1",
    "max over classes [32,10] axis 1": "0x07c5fcfad09d64375636db81a222b414ec2234435b6d396d96ea68438e494b0f",
    "sum over classes [32,10] axis 1": "0x3e35810c657771814da99fb77cfda5b52f880d37a3701afe9caf533134c3c80e",
    "sum over batch [32,64] axis 0": "0x2ff5fa7f91c2571eee6f6ada52786897be4eec70b941d2882b8c9cdf29ad7b00",
    "softmax cross-entropy loss and gradient [32,10]": "0x2ddffeacc033c46e739849192f60c83c4a71ca97711debaabd1f63a9a760dc8c",
    "adam two steps [784,64]": "0xc3d9b598f60bc46eae63c8823df70dd99b56bbf73062196502668a67c8501069"
  }
}

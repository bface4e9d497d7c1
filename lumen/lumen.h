#pragma once
// The public API of Lumen: include this one header.
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/reduction.h"
#include "tensor/generator.h"
#include "tensor/tensor.h"

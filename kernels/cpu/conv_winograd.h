#pragma once
// 3x3 convolutions with unit stride and dilation, one group, by Winograd's F(2x2, 3x3) (Lavin
// and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015). conv.cpp takes this path
// for the forward pass, as a convolution of grad_out with the flipped filters for the gradient
// of the input, and for the gradient of the weights.
#include <cstdint>

namespace lumen::kernels {

// y [N, O, OH, OW] = sum over c of x [N, C, H, W] correlated with the 3x3 filters, padded by
// (pad_h, pad_w): OH = H + 2 pad_h - 2, OW = W + 2 pad_w - 2.
struct Winograd3x3 {
  int64_t N, C, H, W, O, pad_h, pad_w;
  // The filters as the forward pass has them (w [O, C, 3, 3]), or, for the gradient of an
  // input, the forward's w [C, O, 3, 3] read transposed and rotated by 180 degrees.
  bool flipped = false;
};

// Whether the path pays: the transforms cost about what 16 GEMMs with few channels save.
inline bool winograd_pays(int64_t in_channels, int64_t out_channels) {
  return in_channels >= 16 && out_channels >= 8;
}

template <class T>
void winograd_conv3x3(const T* x, const T* w, const T* bias, T* y, const Winograd3x3& s);

// grad_w [O, C, 3, 3] (overwritten) of the forward convolution s (not flipped) from its input x
// and grad_out gy [N, O, OH, OW].
template <class T>
void winograd_conv3x3_backward_weight(const T* x, const T* gy, T* gw, const Winograd3x3& s);

}  // namespace lumen::kernels

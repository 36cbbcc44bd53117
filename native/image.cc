// JPEG decoding with libjpeg-turbo for the data loader's worker threads: decodes
// straight to RGB bytes, shrinking in the DCT domain (1/2, 1/4, 1/8) when the
// image is far bigger than needed. Kept apart from the libtorch addon so that
// workers load only this. Corrupt or truncated data is an error, never grey fill.
#include <napi.h>

#include <csetjmp>
#include <cstring>
#include <cstdio>
#include <jpeglib.h>
#include <string>
#include <vector>

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  int warnings = 0;
};

void OnError(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

void OnMessage(j_common_ptr cinfo, int level) {
  // Level -1 is a warning (e.g. premature end of data): the data is damaged.
  if (level < 0) {
    auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    if (err->warnings++ == 0) (*cinfo->err->format_message)(cinfo, err->message);
  }
}

// decodeJpeg(bytes, minWidth, minHeight, maxPixels) -> { data: Uint8Array (RGB), width, height }
// or null when the colour space is one this path does not handle (CMYK). An image
// whose header declares more than maxPixels pixels is an error before any decoding:
// libjpeg itself has no limit, and a few hundred bytes can declare gigapixels.
Napi::Value DecodeJpeg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto bytes = info[0].As<Napi::Uint8Array>();
  int minW = info.Length() > 1 ? info[1].As<Napi::Number>().Int32Value() : 0;
  int minH = info.Length() > 2 ? info[2].As<Napi::Number>().Int32Value() : 0;
  double maxPixels = info.Length() > 3 ? info[3].As<Napi::Number>().DoubleValue() : 178956970.0;
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = OnError;
  err.pub.emit_message = OnMessage;
  std::vector<unsigned char> out;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw Napi::Error::New(env, std::string("corrupt JPEG: ") + err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.Data(), bytes.ByteLength());
  jpeg_read_header(&cinfo, TRUE);
  if (static_cast<double>(cinfo.image_width) * static_cast<double>(cinfo.image_height) > maxPixels) {
    const unsigned w = cinfo.image_width;
    const unsigned h = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    Napi::Error e = Napi::Error::New(env, "over the pixel limit");
    e.Set("width", Napi::Number::New(env, w));
    e.Set("height", Napi::Number::New(env, h));
    throw e;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    return env.Null();
  }
  cinfo.out_color_space = JCS_RGB;
  // The largest DCT shrink that keeps both sides at or above what is needed.
  for (unsigned denom : {8u, 4u, 2u}) {
    if ((cinfo.image_width + denom - 1) / denom >= static_cast<unsigned>(minW) &&
        (cinfo.image_height + denom - 1) / denom >= static_cast<unsigned>(minH)) {
      cinfo.scale_num = 1;
      cinfo.scale_denom = denom;
      break;
    }
  }
  jpeg_start_decompress(&cinfo);
  const unsigned w = cinfo.output_width;
  const unsigned h = cinfo.output_height;
  out.resize(static_cast<size_t>(w) * h * 3);
  while (cinfo.output_scanline < h) {
    JSAMPROW row = out.data() + static_cast<size_t>(cinfo.output_scanline) * w * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (err.warnings > 0) throw Napi::Error::New(env, std::string("corrupt JPEG: ") + err.message);
  auto data = Napi::Uint8Array::New(env, out.size());
  std::memcpy(data.Data(), out.data(), out.size());
  auto result = Napi::Object::New(env);
  result.Set("data", data);
  result.Set("width", Napi::Number::New(env, w));
  result.Set("height", Napi::Number::New(env, h));
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeJpeg", Napi::Function::New(env, DecodeJpeg, "decodeJpeg"));
  return exports;
}

}  // namespace

NODE_API_MODULE(fastvision_image, Init)

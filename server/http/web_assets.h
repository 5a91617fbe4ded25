// The dashboard's static files (web/), embedded into the binary at build
// time (embed_assets.cmake), so that the page is served with no files to
// install and works offline.
#ifndef TASKD_SERVER_HTTP_WEB_ASSETS_H_
#define TASKD_SERVER_HTTP_WEB_ASSETS_H_

#include <string_view>

namespace taskd::http {

struct WebAsset {
  std::string_view path;  // "/index.html"
  std::string_view content_type;
  std::string_view body;
};

// The asset served at `path` ("/" is "/index.html"), or null.
const WebAsset* FindWebAsset(std::string_view path);

}  // namespace taskd::http

#endif  // TASKD_SERVER_HTTP_WEB_ASSETS_H_

/* querygate: the manager core's public API in one include. */
#ifndef QUERYGATE_H
#define QUERYGATE_H

#include "querygate/buf.h"
#include "querygate/config.h"
#include "querygate/error.h"
#include "querygate/json.h"
#include "querygate/manager.h"
#include "querygate/params.h"
#include "querygate/replicas.h"
#include "querygate/result.h"
#include "querygate/util.h"

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *qg_version(void);

#endif

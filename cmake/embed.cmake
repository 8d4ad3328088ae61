# SPDX-License-Identifier: EUPL-1.2
# Turns the file IN into a C source OUT defining
#   const char NAME[]; const size_t NAME_len;
# (NUL-terminated; NAME_len excludes the NUL).  NAME defaults to
# zmta_default_config.
if(NOT DEFINED NAME)
  set(NAME zmta_default_config)
endif()
get_filename_component(src_name ${IN} NAME)
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from ${src_name} by cmake/embed.cmake. */\n"
  "#include <stddef.h>\n"
  "const char ${NAME}[] = {\n${bytes}0x00};\n"
  "const size_t ${NAME}_len = ${len};\n")

# Turns the file IN into a C source OUT defining
#   const char zmta_default_config[]; const size_t zmta_default_config_len;
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from config/default.yaml by cmake/embed.cmake. */\n"
  "#include <stddef.h>\n"
  "const char zmta_default_config[] = {\n${bytes}0x00};\n"
  "const size_t zmta_default_config_len = ${len};\n")
